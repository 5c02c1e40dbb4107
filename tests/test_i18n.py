"""Languages: every message the bot can say exists in every catalog (a meta-test)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.i18n import LOCALES, LOCALES_DIR, catalog, gettext, normalise, translator

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("bot", "plugins")
_TEMPLATE_CALL = re.compile(r"""\bt\(\s*"((?:[^"\\]|\\.)*)\"""")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def used_messages() -> dict[str, str]:
    """msgid -> where it is used: every ``_("...")`` / ``t("...")`` in code and templates."""
    found: dict[str, str] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "sandbox" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("_", "t")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    found.setdefault(node.args[0].value, f"{path.relative_to(ROOT)}:{node.lineno}")
        for path in sorted((ROOT / folder).rglob("*.j2")):
            for match in _TEMPLATE_CALL.finditer(path.read_text(encoding="utf-8")):
                found.setdefault(match.group(1), str(path.relative_to(ROOT)))
    return found


def _entries(locale: str) -> dict[str, str]:
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {str(m.id): str(m.string or "") for m in read_po(handle) if m.id}


def test_messages_are_found() -> None:
    assert len(used_messages()) > 40  # the scan itself works


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_in_every_catalog(locale: str) -> None:
    entries = _entries(locale)
    missing = {m: where for m, where in used_messages().items() if m not in entries}
    assert not missing, f"missing from locales/{locale}: {missing}"


def test_french_is_translated_with_the_same_placeholders() -> None:
    entries = _entries("fr")
    for message in used_messages():
        translation = entries.get(message, "")
        assert translation, f"untranslated in French: {message!r}"
        assert set(_PLACEHOLDER.findall(translation)) == set(_PLACEHOLDER.findall(message)), message


def test_no_stale_entries() -> None:
    used = set(used_messages())
    for locale in LOCALES:
        stale = set(_entries(locale)) - used
        assert not stale, f"locales/{locale} has entries nothing uses: {stale}"


def test_lookup_and_formatting() -> None:
    assert gettext("fr", "code owner") == catalog("fr")["code owner"] != "code owner"
    assert gettext("en", "code owner") == "code owner"
    _ = translator("fr_FR")
    assert _("@{name}: {role}, {count} active review(s)", name="bob", role="x", count=2).startswith(
        "@bob"
    )
    assert gettext("de", "code owner") == "code owner"  # unknown language: English


@pytest.mark.parametrize(
    ("given", "expected"),
    [("fr", "fr"), ("fr_FR", "fr"), ("FR-ca", "fr"), ("en_US", "en"), ("de", "en"), (None, "en")],
)
def test_normalise(given: str | None, expected: str) -> None:
    assert normalise(given) == expected


if __name__ == "__main__":  # list what the catalogs lack: python -m tests.test_i18n
    for locale in LOCALES:
        entries = _entries(locale)
        for message in used_messages():
            if message not in entries or (locale != "en" and not entries[message]):
                print(f"{locale}: {message!r}")
