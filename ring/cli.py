"""The ``ringmesh`` command: a dispatcher over subcommands that live beside what they drive.

Each entry of ``COMMANDS`` names a module with ``register(subparsers)``; the module adds its
subcommand(s) and sets ``func`` on them. A missing optional module is skipped, so the CLI
works whatever subset of the project is installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "simulations.cli", "topology.cli",
    "ring.cli_demo",
    "ring.cli_node",
    "edge.cli_edge", "edge.cli_demo",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringmesh", description="XMPP ring overlay router mesh")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="log verbosity")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None, name: str) -> int:
    """Parse, run the chosen subcommand, and turn bad input into one readable line."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), argv, "ringmesh")


if __name__ == "__main__":
    sys.exit(main())
