"""``mcq models``: the registered encoders, or every encoder x head's parameters beside the paper's."""

from __future__ import annotations

import argparse

from mcq.cli.common import add_command

EXAMPLES = "examples:\n  mcq models\n  mcq models --params   # every encoder x head: parameters beside the paper's"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "models", "list the registered encoders", EXAMPLES)
    p.add_argument("--params", action="store_true",
                   help="parameters of every encoder x head (and Mask R-CNN) beside the paper's (Tables 9, 10)")


def run(args: argparse.Namespace) -> None:
    if args.params:
        from mcq.models.params import compare_params, format_params

        print(format_params(compare_params()))
    else:
        from mcq.models.encoders import describe_encoders, format_encoders

        print(format_encoders(describe_encoders()))
