"""The ``losslens`` command: one subcommand per module listed in ``SUBCOMMANDS``.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func=run``, and ``run(args) -> int``. Errors caused by the input are printed as one line,
``losslens: error: <message>``, with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from losslens.errors import LosslensError

# Append a new subcommand's module here.
SUBCOMMANDS: tuple[str, ...] = (
    "losslens.cli.train",
    "losslens.cli.evaluate",
    "losslens.cli.surface",
    "losslens.cli.interpolate",
    "losslens.cli.hessian",
    "losslens.cli.plot",
    "losslens.cli.fit",
    "losslens.cli.replay",
)


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad flag reported as one line (plus where to find the usage) instead of two."""

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
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # import strings (--model mymodels:net) find the user's modules
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error argparse has already printed
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("losslens: interrupted", file=sys.stderr)
        return 130
    except (LosslensError, FileNotFoundError, ValueError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"losslens: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
