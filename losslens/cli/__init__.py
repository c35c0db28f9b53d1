"""The ``losslens`` command; ``main`` starts it.

Importing the command's modules takes seconds (torch, scipy, ...): a Ctrl-C or SIGTERM in that time ends the
process with one line, as it would a running command (nothing is computed yet), not with a traceback from inside
an import. A signal the caller ignores (``nohup``) stays ignored.
"""

from __future__ import annotations

import os
import signal
import sys

from losslens.cli._signals import EXIT_STATUS, stop_message


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""

    def starting(signum, frame):
        print(stop_message(signum, "nothing was computed yet"), file=sys.stderr, flush=True)
        os._exit(EXIT_STATUS[signum])

    previous = {s: signal.signal(s, starting) for s in EXIT_STATUS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        from losslens.cli.main import main as run
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return run(argv)
