"""``mcq``: a thin shell over the library. Each command's module parses its flags, calls one library function and
prints."""

from __future__ import annotations

import argparse

from mcq.cli import analyze, app, data, evaluate, experiment, export, interop, models, predict, profile, train
from mcq.cli.common import DEBUG, exit_status

COMMANDS = {"models": models, "data": data, "train": train, "eval": evaluate, "export": export, "profile": profile,
            "import": interop, "analyze": analyze, "predict": predict, "experiment": experiment, "app": app}


def parser() -> argparse.ArgumentParser:
    """``mcq``'s parser: each command's module adds its own (``add_parser``)."""
    p = argparse.ArgumentParser(prog="mcq", parents=[DEBUG], formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="CLIP-pretrained mobile encoders for on-device dense prediction.",
                                epilog=train.EXAMPLES)
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the command, return its exit status."""
    args = parser().parse_args(argv)
    return exit_status(COMMANDS[args.command].run, args)


__all__ = ["COMMANDS", "main", "parser"]
