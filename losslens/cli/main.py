"""The ``losslens`` command: one subcommand per module listed in ``SUBCOMMANDS``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func=run``, and ``run(args) -> int``. Errors caused by the input are printed as one line,
``losslens: error: <message>``, with exit status 2; warnings as ``losslens: warning: <message>``.
Ctrl-C (SIGINT) and SIGTERM (what SLURM and torchrun send to stop a job) both stop the command
cleanly within a second or two, even inside a long native call (``losslens.cli._signals``): files
are flushed and closed, so running the same command again resumes a grid; the exit status is 130 or 143.

Import strings (``--model package.module:factory``) are imported from ``sys.path`` as Python sets it;
the working directory is not added to it: run ``PYTHONPATH=. losslens ...`` for a module there.

A flag name means one thing in every command (``tests/cli/test_cli_flags.py`` checks it): ``--steps`` is
grid points per axis (``replay``'s optimizer updates are ``--updates``). ``--out DIR`` is a directory:
the commands that read result files (plot, multiscale, topology, compare-surfaces) write beside them by
default, the others into ``losslens-out`` (``DEFAULT_OUT``), where ``report`` finds and reuses their
results; ``train``'s ``--out`` is the run and required, ``evaluate`` writes ``DIR/evaluation.json`` only
when given one.
"""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
import warnings

from losslens.cli._signals import EXIT_STATUS, Terminated, stop_message, stop_on_signals
from losslens.errors import LosslensError

# Append a new subcommand's module here.
SUBCOMMANDS: tuple[str, ...] = (
    "losslens.cli.train",
    "losslens.cli.evaluate",
    "losslens.cli.surface",
    "losslens.cli.interpolate",
    "losslens.cli.connect",
    "losslens.cli.hessian",
    "losslens.cli.curvature_map",
    "losslens.cli.plot",
    "losslens.cli.export",
    "losslens.cli.multiscale",
    "losslens.cli.topology",
    "losslens.cli.compare_surfaces",
    "losslens.cli.trajectory",
    "losslens.cli.compare",
    "losslens.cli.dynamics",
    "losslens.cli.fit",
    "losslens.cli.replay",
    "losslens.cli.report",
)
# -1, -0.5, -.5, -1e-3, -inf, -nan: values, not flags (so that a flag's own check names them)
_NUMBER = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line, and negative numbers in e-notation read as values."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NUMBER

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="losslens", description="Loss landscapes of neural networks: train, evaluate, explore.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    with stop_on_signals():
        try:
            return _main(argv)
        except KeyboardInterrupt as stop:  # also while parsing, before the command's own handling
            signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
            print(stop_message(signum), file=sys.stderr)
            return EXIT_STATUS[signum]


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has already printed
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    show = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except (LosslensError, FileNotFoundError, ValueError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, (FileExistsError, NotADirectoryError)) and e.filename:  # mkdir of an output folder
            message = f"{e.filename}: a file is in the way of a directory losslens writes into ({e.strerror})"
        print(f"losslens: error: {message}", file=sys.stderr)
        return 2
    except MemoryError as e:  # a size asked for (a grid, a subset, a model) that this machine cannot hold
        print(f"losslens: error: out of memory: {' '.join(str(e).split())}; ask for less", file=sys.stderr)
        return 2
    except OverflowError as e:  # a count beyond what Python or torch can index (--epochs 2**70)
        print(f"losslens: error: a number given is too large ({e})", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split()).removeprefix("losslens: ")
    print(f"losslens: warning: {text}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
