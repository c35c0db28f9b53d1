"""``python -m losslens``: the ``losslens`` command (also what ``torchrun -m losslens`` runs)."""

import sys

from losslens.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
