"""README.md and docs/*.md: every relative link and anchor resolves, and every `mcq` command they name exists."""

from __future__ import annotations

import functools
import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from urllib.parse import unquote

import pytest

from mcq.cli import main

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^ {0,3}(?:```|~~~).*$", re.MULTILINE)
# inline code, which may wrap but not cross a paragraph
CODE_SPAN = re.compile(r"(`+)((?:(?!\n\s*\n).)+?)\1", re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
COMMAND = re.compile(r"(?<![\w./$-])mcq(?=[ \t]+([^\n]*))")
WORD = re.compile(r"[a-z0-9][a-z0-9-]*")
SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def parse(text: str) -> tuple[str, list[str], list[str]]:
    """A page's prose without code, its code (fenced blocks and inline spans) and its headings."""
    chunks = FENCE.split(text)
    prose, blocks = chunks[0::2], chunks[1::2]
    spans = [" ".join(m.group(2).split()) for chunk in prose for m in CODE_SPAN.finditer(chunk)]
    headings = [h for chunk in prose for h in HEADING.findall(chunk)]
    return "\n".join(CODE_SPAN.sub(" ", chunk) for chunk in prose), blocks + spans, headings


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but `-` and `_` dropped, spaces as `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings, repeated ones numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    for h in parse(text)[2]:
        s = slug(h)
        seen[s] = seen.get(s, -1) + 1
        if seen[s]:
            seen[f"{s}-{seen[s]}"] = 0
    return set(seen)


def broken_links(text: str, page: Path) -> list[str]:
    """Relative link targets of `text` (the page at `page`) that name no file, or no heading of a Markdown file."""
    errors = []
    for target in LINK.findall(parse(text)[0]):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = page.parent / unquote(path)
        markdown = not path or file.suffix == ".md"  # the anchor is a heading's, on this page or another
        if path and not file.exists():
            errors.append(f"{page.name}: {target}: no such file")
        elif anchor and markdown and anchor not in anchors(file.read_text() if path else text):
            errors.append(f"{page.name}: {target}: no such heading")
    return errors


def commands(text: str) -> set[tuple[str, ...]]:
    """Every `mcq ...` in a page's code, as its leading words that look like subcommand names."""
    found = set()
    for code in parse(text)[1]:
        for m in COMMAND.finditer(code):
            words = []
            for w in m.group(1).split():
                if not WORD.fullmatch(w):
                    break
                words.append(w)
            if words:
                found.add(tuple(words))
    return found


@functools.cache
def _help_exits_0(words: tuple[str, ...]) -> bool:
    """`mcq WORDS --help` exits 0; argparse exits 2 on an unknown subcommand or choice before it reaches --help."""
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            main([*words, "--help"])
        except SystemExit as e:
            return e.code == 0
    return False


def unknown_commands(found: set[tuple[str, ...]]) -> list[str]:
    """The commands of `found` that the CLI does not know."""
    return sorted("mcq " + " ".join(words) for words in found if not _help_exits_0(words))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    assert broken_links(page.read_text(), page) == []


def test_commands_exist():
    found = set().union(*(commands(p.read_text()) for p in PAGES))
    assert {("train", "seg"), ("export", "onnx"), ("profile", "compare"), ("import", "mmseg")} <= found
    assert unknown_commands(found) == []


def test_readme_opens_with_the_two_commands():
    """CI and reviewers start at the README's first section: `make demo`, `make test`."""
    text = (REPO / "README.md").read_text()
    assert parse(text)[2][:2] == ["mcq", "Two commands on a fresh machine"]
    first = text.split("\n## ")[1]
    assert "make demo" in first and "make test" in first


def test_the_checks_fail_on_broken_docs(tmp_path):
    """A missing file, a missing heading and an unknown command are reported; code is not read as links or headings."""
    (tmp_path / "other.md").write_text("# Other page\n\n```bash\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    text = ("# Title (`--flag`)\n\n[a](other.md#other-page) [b](missing.md) [c](other.md#not-a-heading) "
            "[d](#title---flag) [e](#nope) [f](https://example.com/x.md) `[g](gone.md)`\n\n"
            "```bash\nmcq trian seg --data x   # [h](gone.md)\nmcq predict photo.jpg\n```\n\n"
            "`mcq data synth\nseg --out d`, `mcq train trian`, `mcq models --params`, `python -m mcq.cli`\n")
    assert broken_links(text, page) == ["page.md: missing.md: no such file",
                                        "page.md: other.md#not-a-heading: no such heading",
                                        "page.md: #nope: no such heading"]
    found = commands(text)
    assert found == {("trian", "seg"), ("predict",), ("data", "synth", "seg"), ("train", "trian"), ("models",)}
    assert unknown_commands(found) == ["mcq train trian", "mcq trian seg"]
    assert slug("Attention distance (`mcq analyze attention-distance`, the paper's Fig. 3)") == \
        "attention-distance-mcq-analyze-attention-distance-the-papers-fig-3"
