"""Links between our Markdown files lead somewhere: the file exists, and the heading an anchor
names is there (GitHub's anchors: the heading in lower case, punctuation dropped, blanks as
hyphens)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.conftest import DOCS, ROOT

PAGES = sorted([*DOCS.glob("*.md"), ROOT / "README.md"])
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text("utf-8"))
    return {anchor(h) for h in _HEADING.findall(text)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_and_anchor_resolves(page: Path) -> None:
    text = _FENCE.sub("", page.read_text("utf-8"))
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to missing {target}"
        assert ROOT in linked.parents or linked == ROOT, f"{page.name}: {target} leaves the repo"
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked), f"{page.name}: no heading for {target}"


def test_anchors_follow_github() -> None:
    assert anchor("RPC: `POST /rpc`") == "rpc-post-rpc"
    assert anchor("`stream.write`") == "streamwrite"
    assert anchor("Health, readiness and version") == "health-readiness-and-version"


_CITATION = re.compile(r'docs/(API|CONFIGURATION|DEPLOYMENT)\.md[,:]? \(?"([^"]+)"')
_CODE = ["src", "tests", "scripts", "examples"]


def _headings(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text("utf-8"))
    return [h.replace("`", "") for h in _HEADING.findall(text)]


def test_code_comments_cite_sections_that_exist() -> None:
    """``docs/API.md, "Limits"`` in a comment names the start of a heading of that page."""
    cited = 0
    for folder in _CODE:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".sql", ".sh") or "node_modules" in path.parts:
                continue
            for page, cited_section in _CITATION.findall(path.read_text("utf-8")):
                cited += 1
                section = " ".join(cited_section.split())  # a citation may wrap
                headings = _headings(DOCS / f"{page}.md")
                assert any(h.startswith(section) for h in headings), (
                    f"{path.relative_to(ROOT)} cites docs/{page}.md, {section!r}: no such heading"
                )
    assert cited > 10
