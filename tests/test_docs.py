"""The README and ``docs/`` stand alone and stay true to the code: every link resolves
inside the repository (files and headings), nothing points at documents outside it, every
setting is documented, and every command is in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.cli import _parser
from bot.plugins import default_areas, find_areas
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def _prose(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, inline-code marks and punctuation
    other than ``-`` and ``_`` dropped, spaces turned into hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in _prose(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    targets = []
    for line in _prose(path.read_text(encoding="utf-8")):
        targets.extend(_LINK.findall(_INLINE_CODE.sub("", line)))
    return targets


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(document: Path) -> None:
    broken = []
    for target in links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        where, _, anchor = target.partition("#")
        file = (document.parent / where).resolve() if where else document
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif not file.resolve().is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert broken == [], f"{document.name}: {broken}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_document_refers_to_material_outside_the_repository(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    for outside in ("SPEC.md", "SPEC's", "PROTOCOLS.md", "../shared", "/work/"):
        assert outside not in text, f"{document.name} mentions {outside}"


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [
        name
        for name in Settings.model_fields
        if f"`{name.upper()}`" not in text and f"{name}:" not in text
    ]
    assert missing == []
    assert "`ROULETTE_CONFIG`" in text


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = _parser(find_areas(default_areas()))
    subcommands = next(action for action in parser._actions if action.dest == "command").choices
    assert subcommands  # the parser really was read
    missing = [name for name in subcommands if f"`roulette-bot {name}" not in readme]
    assert missing == []


def test_slug_follows_github() -> None:
    assert slug("Feature areas (`plugins:`)") == "feature-areas-plugins"
    assert slug("`roulette-bot simulate --silent-share X`") == (
        "roulette-bot-simulate---silent-share-x"
    )
    assert slug("One `/roulette`, from HTTP to the GitLab note") == (
        "one-roulette-from-http-to-the-gitlab-note"
    )
