"""The ``dave-lightning`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dave-lightning",
        description="DAVE attributions and explanation-quality monitoring for timm ViTs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="fine-tune a tiny ViT on the embedded dataset (not there yet)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        print("dave-lightning demo: the demo is not there yet (see the project's issue tracker).")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
