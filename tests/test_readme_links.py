"""README.md is a short front page starting with the two commands, and every relative link and anchor in it and in
docs/ resolves: the file exists and, for `page.md#anchor`, a heading of that page has that GitHub slug."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]

# CI and a checker read these two commands from the top of the README.
TWO_COMMANDS = """\
```sh
python3 -m pip install . && sse-monitor demo     # install, then run the daemon on built-in targets
scripts/test                                     # install what the tests need (apt + pip), run them all
```
"""

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
# An inline link or image: the destination may start on the next line, as CommonMark allows.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks (whose `](` and `#` lines are not links or headings)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, without punctuation, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor of a page, with GitHub's -1, -2, ... suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(f"{base}-{count}" if count else base)
    return frozenset(found)


def relative_links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", prose(path.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def broken(page: Path, target: str) -> str | None:
    """Why a link of a page does not resolve, or None."""
    file_part, _, anchor = target.partition("#")
    linked = (page.parent / file_part).resolve() if file_part else page
    if not linked.exists():
        return f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}"
    if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        return f"{target}: no heading with the anchor #{anchor} in {linked.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = [problem for target in relative_links(page) if (problem := broken(page, target))]
    assert problems == []


def test_the_readme_starts_with_the_two_commands() -> None:
    assert README.read_text(encoding="utf-8").startswith("# sse-monitor\n\n" + TWO_COMMANDS)


def test_the_readme_is_a_front_page_of_at_most_260_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 260


def test_the_readme_links_every_docs_page() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in relative_links(README)}
    unlinked = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "docs").glob("*.md")) if path not in linked]
    assert unlinked == []


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor() -> None:
    assert broken(README, "docs/probe.md#the-resumption-check-resume") is None
    assert "no heading" in broken(README, "docs/probe.md#no-such-section")
    assert "no file" in broken(README, "docs/no-such-page.md")
    assert slug("What the server says it spent: `server_timing`, `request_id`") == \
        "what-the-server-says-it-spent-server_timing-request_id"
