"""``har-stream`` entry point: parses arguments and turns ``HarStreamError`` into one clear line.

This is the only place where expected errors become exit codes; anything else is a bug and keeps its
traceback so it can be reported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ConfigError, HarStreamError
from .logs import LOG_FORMATS, configure_logging, resolve_log_format
from .plugins import Command, discover_commands

# This package's own sub-commands; the server package adds ``serve`` through an entry point (plugins.py).
COMMANDS = ("analyse", "weights", "models", "bench", "train", "eval", "watch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="har-stream",
        description="Real-time human action recognition: live streams and offline video analysis.",
    )
    parser.add_argument("--version", action="version", version=f"har-stream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="text (default) or json: one JSON object per line with time, level, logger, message "
                             "and the stream/peer/job ids (also $HAR_STREAM_LOG_FORMAT)")
    parser.set_defaults(unavailable=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f".commands.{name}", __package__)
        module.add_parser(sub)
    for command in discover_commands():
        if command.add_parser is not None:
            command.add_parser(sub)
        else:
            _add_unavailable(sub, command)
    return parser


def _add_unavailable(sub: argparse._SubParsersAction, command: Command) -> None:
    """A sub-command another package should provide and does not: it takes any arguments and fails in one line
    saying why, instead of argparse's "invalid choice"."""

    def fail(args: argparse.Namespace) -> int:
        raise ConfigError(f"{command.name}: {command.unavailable}")

    p = sub.add_parser(command.name, add_help=False, help=f"(not available: {command.unavailable})")
    p.set_defaults(func=fail, unavailable=command.unavailable)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.unavailable is None:  # what parse_args does; an unavailable command says why instead
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        configure_logging(logging.DEBUG if args.verbose else logging.WARNING, resolve_log_format(args.log_format))
        return int(args.func(args) or 0)
    except HarStreamError as err:
        print(f"har-stream: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("har-stream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
