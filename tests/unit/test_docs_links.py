"""Every relative link of the README and docs/ resolves, and no page sends users where they cannot go.

Users read the repository (on GitHub or a clone), not the project's specification folder: a link into
``../shared`` or to a ``spec/*.md`` page is a dead end for them, and so is a renamed page or heading. For each
Markdown link or image outside code (inline ``[text](target)``, ``![alt](target)`` and reference definitions
``[name]: target``) this checks that the target file or directory exists inside the repository and, when it
names a ``#fragment`` of a Markdown page, that the page has a heading with that GitHub-style slug.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_UNREACHABLE = re.compile(r"(?:\.\./)+shared/|/work/shared|(?<![\w/.-])spec/[\w.-]+\.md")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks, with inline code spans blanked."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        yield number, _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link, image and reference definition outside code."""
    found: list[tuple[int, str]] = []
    for number, line in prose_lines(text):
        found += [(number, m.group(1)) for m in _INLINE.finditer(line)]
        if reference := _REFERENCE.match(line):
            found.append((number, reference.group(1)))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a Markdown page's headings; repeated headings get ``-1``, ``-2``… as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines_keep_code_spans(text):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def prose_lines_keep_code_spans(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, as written (headings keep their code spans' text)."""
    lines = text.splitlines()
    for number, _ in prose_lines(text):
        yield number, lines[number - 1]


def problems(page: Path, text: str, *, root: Path = ROOT) -> list[str]:
    """What is wrong with the links of one page: missing targets, unknown anchors, unreachable places."""
    found: list[str] = []
    where = page.relative_to(root)
    for number, line in enumerate(text.splitlines(), start=1):  # code too: a command may name a path
        found += [
            f"{where}:{number}: points where users cannot go: {m.group(0)}"
            for m in _UNREACHABLE.finditer(line)
        ]
    for number, target in links(text):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto…: not checked (no network in unit tests)
        path_part, _, fragment = target.partition("#")
        path_part = path_part.split("?", 1)[0]
        if not path_part:  # an anchor of this very page
            if fragment not in anchors(text):
                found.append(f"{where}:{number}: {target}: no such heading on this page")
            continue
        resolved = (page.parent / path_part).resolve()
        if not resolved.is_relative_to(root):
            found.append(f"{where}:{number}: {target} leaves the repository")
            continue
        if not resolved.exists():
            found.append(f"{where}:{number}: {target} does not exist")
            continue
        checkable = fragment and resolved.suffix == ".md" and resolved.is_file()
        if checkable and fragment not in anchors(resolved.read_text(encoding="utf-8")):
            found.append(f"{where}:{number}: {target}: no heading #{fragment} in {resolved.name}")
    return found


def test_the_pages_are_found_and_have_links() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) > 5
    assert len(links((ROOT / "README.md").read_text(encoding="utf-8"))) > 10


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert problems(page, page.read_text(encoding="utf-8")) == []


# --- the checker itself -------------------------------------------------------------------------------------
def test_slugs_follow_github() -> None:
    assert slug("Environment, location, zone") == "environment-location-zone"
    assert slug("Two views: full and 0.5") == "two-views-full-and-05"
    assert slug("The `stackl` command: exit codes") == "the-stackl-command-exit-codes"
    assert slug("Secrets from Vault or OpenBao (agent secret handlers)") == (
        "secrets-from-vault-or-openbao-agent-secret-handlers"
    )
    assert slug("STACKL_ACTION and [the rest](x.md)") == "stackl_action-and-the-rest"


def test_repeated_headings_get_numbered_anchors() -> None:
    assert anchors("# Title\n## Example\ntext\n## Example\n") == {"title", "example", "example-1"}


def test_links_in_code_are_not_links() -> None:
    text = (
        "See [a](a.md) and `[b](b.md)`.\n```\n[c](c.md)\n# not a heading\n```\n[d]: d.md\n![e](img/e.png)\n"
    )
    assert [target for _, target in links(text)] == ["a.md", "d.md", "img/e.png"]
    assert anchors(text) == set()


def test_broken_links_anchors_and_unreachable_places_are_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n## A section\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    text = (
        "[ok](other.md#a-section) [web](https://example.com/x.md) [self](#top)\n"
        "# Top\n"
        "[gone](missing.md) [anchor](other.md#nowhere) [out](../../etc/passwd) [up](#nope)\n"
        "as described in spec/agents.md, or [the spec](../shared/spec/api.md)\n"
    )
    found = problems(page, text, root=tmp_path)
    assert found == [
        "docs/page.md:4: points where users cannot go: spec/agents.md",
        "docs/page.md:4: points where users cannot go: ../shared/",
        "docs/page.md:3: missing.md does not exist",
        "docs/page.md:3: other.md#nowhere: no heading #nowhere in other.md",
        "docs/page.md:3: ../../etc/passwd leaves the repository",
        "docs/page.md:3: #nope: no such heading on this page",
        "docs/page.md:4: ../shared/spec/api.md does not exist",
    ]
