"""``memrepl``'s entry point: builds the parser, runs a subcommand, and maps errors to messages.

This is the ONE place where an exception becomes a message and an exit code (STYLE.md,
"Errors"). Every error is one line on stderr, ``memrepl: error: <message>``; ``--traceback``
prints the full traceback before it. Exit codes:

====  ==========================================================================================
0     success
1     the command failed: any :class:`~memrepl.errors.MemreplError` (a missing item, a refused
      write, a store that cannot be opened, a read-only query that tried to write...) or an OS
      error (a file that cannot be read or written)
2     usage: the command line could not be understood (unknown option, bad tier, ...)
3     an internal error: a bug in memrepl (rerun with ``--traceback`` and report it)
130   interrupted (Ctrl-C)
====  ==========================================================================================

Subcommands are found, not listed: every module ``memrepl/cli/<name>_cmds.py`` contributes its
parsers through ``add_parsers(subparsers)`` (see :mod:`memrepl.cli`), so ``serve`` and ``sync``
can arrive as modules of their own without a change here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

import memrepl
import memrepl.cli
from memrepl.cli.context import Parser, Runner, Subparsers, add_common_options
from memrepl.errors import (
    ItemExistsError,
    MemreplError,
    NodeIdMismatchError,
    UsageError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

#: Modules of this package with this suffix contribute subcommands.
COMMAND_MODULE_SUFFIX = "_cmds"
#: Where a command module without an ``ORDER`` constant goes in ``memrepl --help``.
DEFAULT_ORDER = 100

PROG = "memrepl"


def command_modules() -> list[ModuleType]:
    """Every ``memrepl.cli.*_cmds`` module, in ``ORDER`` then name order."""
    found = []
    for info in pkgutil.iter_modules(memrepl.cli.__path__):
        if info.name.endswith(COMMAND_MODULE_SUFFIX):
            found.append(importlib.import_module(f"{memrepl.cli.__name__}.{info.name}"))

    def order(module: ModuleType) -> tuple[int, str]:
        rank = getattr(module, "ORDER", DEFAULT_ORDER)
        return (rank if isinstance(rank, int) else DEFAULT_ORDER, module.__name__)

    return sorted(found, key=order)


def build_parser() -> argparse.ArgumentParser:
    """The ``memrepl`` parser with every command module's subcommands."""
    parser = Parser(
        prog=PROG,
        description=(
            "memrepl: durable, replicated three-tier memory for AI agents. Works on the store "
            "named by --db (default: $MEMREPL_DB, else ./memrepl.db)."
        ),
        epilog="Run 'memrepl COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"memrepl {memrepl.__version__}")
    add_common_options(parser, top_level=True)
    subparsers: Subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for module in command_modules():
        add_parsers: Callable[[Subparsers], None] = module.add_parsers
        add_parsers(subparsers)
    return parser


def _report(message: str, *, show_traceback: bool) -> None:
    if show_traceback:
        traceback.print_exc(file=sys.stderr)
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


#: What to add to a library error's message so that it speaks of commands, not API calls.
HINTS: dict[type[MemreplError], str] = {
    ItemExistsError: "'memrepl put --update' replaces it, 'memrepl merge' sets fields",
    NodeIdMismatchError: "leave --node-id out to use the store's own",
}


def _message(exc: BaseException) -> str:
    """The one-line message for ``exc``: its text, plus the CLI's hint for its type."""
    text = str(exc).strip().replace("\n", " ") or type(exc).__name__
    for kind, hint in HINTS.items():
        if isinstance(exc, kind) and hint:
            return f"{text} ({hint})"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``memrepl`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Never raises (except SystemExit from ``--help``/``--version``, handled here too) and never
    exits the interpreter: the console script and ``python -m memrepl`` pass the code on.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    wants_traceback = "--traceback" in arguments
    try:
        try:
            args = build_parser().parse_args(arguments)
        except SystemExit as exc:  # --help and --version exit through argparse
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        wants_traceback = bool(args.traceback)
        run: Runner = args.run
        code = run(args)
        # Flush here, not at interpreter exit, so a closed pipe is handled below.
        sys.stdout.flush()
        return code
    except UsageError as exc:
        _report(_message(exc), show_traceback=wants_traceback)
        return EXIT_USAGE
    except MemreplError as exc:
        _report(_message(exc), show_traceback=wants_traceback)
        return EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (``memrepl list ... | head``): stop quietly, and keep Python
        # from complaining again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        _report(_message(exc), show_traceback=wants_traceback)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _report("interrupted", show_traceback=wants_traceback)
        return EXIT_INTERRUPTED
    except Exception as exc:
        _report(
            f"internal error: {type(exc).__name__}: {_message(exc)}"
            + ("" if wants_traceback else " (rerun with --traceback and report it)"),
            show_traceback=wants_traceback,
        )
        return EXIT_INTERNAL
