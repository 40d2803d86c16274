"""The command line's layout (docs/layout.md): one module per command in mcq/cli/, each adding a parser whose help
ends with examples of that command."""

from __future__ import annotations

import argparse
from pathlib import Path

import mcq.cli
from mcq.cli import COMMANDS, parser
from mcq.recipes import load_recipe

SHARED = {"__init__", "__main__", "common"}


def runnable(p: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """``(words, parser)`` of every command below ``p`` that runs: all but those that only hold subcommands."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if words and not any(s.required for s in subs):
        yield words, p
    for s in subs:
        for name, child in s.choices.items():
            yield from runnable(child, (*words, name))


def test_every_module_is_a_command():
    modules = {f"mcq.cli.{f.stem}" for f in Path(mcq.cli.__file__).parent.glob("*.py") if f.stem not in SHARED}
    assert {m.__name__ for m in COMMANDS.values()} == modules


def test_every_command_shows_its_examples():
    found = dict(runnable(parser()))
    assert {("models",), ("profile",), ("profile", "compare"), ("data", "synth"), ("app", "web")} <= set(found)
    missing = [" ".join(w) for w, p in found.items() if "mcq " + " ".join(w) not in (p.epilog or "")]
    assert missing == []


def test_train_help_reads_the_recipes():
    text = dict(runnable(parser()))[("train",)].format_help()
    fpn, det = load_recipe("seg", "fpn"), load_recipe("det", "maskrcnn")
    assert f"seg {fpn.batch_size} /" in text and f"{fpn.max_steps // 1000}k SemanticFPN" in text
    assert f"(recipe: {det.roi_batch_size};" in text
