"""What every command shares: ``--debug``, how a command's parser is made, and how errors reach the user."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from mcq.errors import McqError, first_line

DEBUG = argparse.ArgumentParser(add_help=False)
DEBUG.add_argument("--debug", action="store_true", help="show the full traceback of any error (and of each failed "
                   "artifact or profile cell whose error was not mcq's own)")


def add_command(subparsers: argparse._SubParsersAction, name: str, help: str,
                epilog: str | None = None) -> argparse.ArgumentParser:
    """A (sub)command's parser: ``--debug``, and its examples as the epilog, kept as written."""
    return subparsers.add_parser(name, parents=[DEBUG], help=help, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def add_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """A command that only holds subcommands (``mcq data synth``, ``mcq app web``): their ``subparsers``."""
    return add_command(subparsers, name, help).add_subparsers(dest=f"{name}_command", required=True)


def lightning_logs_to_stdout() -> None:
    """Lightning logs its start-up notes ("GPU available: ...") to stderr; keep stderr for mcq's one-line errors."""
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for h in logging.getLogger(name).handlers:
            if type(h) is logging.StreamHandler:  # Lightning's console handlers, bound to stderr at import
                h.stream = sys.stdout


def print_tracebacks(args: argparse.Namespace, reports: list[dict]) -> None:
    """With ``--debug``: the traceback of each failure a report carries that was not one of mcq's own errors."""
    if args.debug:
        for r in reports:
            if "traceback" in r:
                print(r["traceback"], file=sys.stderr)


def one_line(e: McqError) -> str:
    """The user's message; errors raised in a DataLoader worker arrive wrapped in a traceback text."""
    msg = str(e)
    if "Original Traceback" in msg:
        msg = msg.strip().splitlines()[-1].split("McqError: ", 1)[-1]
    return msg


def exit_status(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """``run(args)``'s exit status: mcq's errors as one line (2), others as one line naming --debug (1); with
    ``--debug`` they are raised."""
    try:
        rc = run(args)
    except McqError as e:
        if args.debug:
            raise
        print(f"mcq: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mcq: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # not one of mcq's errors, so a bug or a library's: where, and how to see more
        if args.debug:
            raise
        print(f"mcq {args.command}: unexpected {type(e).__name__}: {first_line(e)} (run again with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    except SystemExit as e:
        if type(e).__name__ != "SIGTERMException":  # Lightning's, raised with no code (exit status 0) on SIGTERM
            raise
        print("mcq: terminated (SIGTERM); an interrupted training run continues with --resume", file=sys.stderr)
        return 143
    return rc or 0
