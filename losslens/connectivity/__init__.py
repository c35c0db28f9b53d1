"""Paths between two trained weight vectors: are two minima connected, and how high is the way between them?

``connect`` evaluates the line, Bezier curves and polychains with a trained bend (``curves.py``, ``train_bend.py``)
and the chain AutoNEB relaxes (``neb.py``) between two checkpoints, and returns a ``Connection`` with the barriers
of each path (``barriers.py``).
"""

from losslens.connectivity.barriers import barriers, line_barriers
from losslens.connectivity.connect import PATHS, connect
from losslens.connectivity.connection import Connection
from losslens.connectivity.curves import Bezier, Line, Polychain
from losslens.connectivity.neb import NEBChain, neb
from losslens.connectivity.train_bend import BendTraining, train_bend

__all__ = ["connect", "PATHS", "Connection", "barriers", "line_barriers", "neb", "NEBChain", "Line", "Bezier", "Polychain",
           "BendTraining", "train_bend"]
