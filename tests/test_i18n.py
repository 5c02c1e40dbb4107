"""Languages: every message the bot can say exists in every catalog (a meta-test)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.errors import CommandError
from bot.i18n import LOCALES, LOCALES_DIR, Message, catalog, gettext, normalise, translator

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("bot", "plugins")
_TEMPLATE_CALL = re.compile(r"""\bt\(\s*"((?:[^"\\]|\\.)*)\"""")
_TEMPLATE_PLURAL = re.compile(r"""\bt\.ngettext\(\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)\"""")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


_CATALOG_CALLS = {"_", "t", "CommandError", "Message"}  # first argument: a msgid
_PLURAL_CALLS = {"ngettext"}  # _.ngettext(singular, plural, n): both are msgids


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _called(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _sources() -> list[Path]:
    return [
        path
        for folder in SOURCES
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "sandbox" not in path.parts
    ]


def used_messages() -> dict[str, str]:
    """msgid -> where it is used: every ``_("...")``, ``t("...")``, ``CommandError("...")``,
    ``Message("...")`` and both ids of every ``ngettext`` in code and templates."""
    found: dict[str, str] = {}
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name, where = _called(node), f"{path.relative_to(ROOT)}:{node.lineno}"
            ids: list[str | None] = []
            if name in _CATALOG_CALLS and isinstance(node.func, ast.Name):
                ids = [_literal(node.args[0])]
                if name == "Message":  # Message(id, params, plural, count): both ids
                    plural = node.args[2:3] + [k.value for k in node.keywords if k.arg == "plural"]
                    ids += [_literal(p) for p in plural]
            elif name in _PLURAL_CALLS and len(node.args) >= 2:
                ids = [_literal(node.args[0]), _literal(node.args[1])]
            for msgid in ids:
                if msgid is not None:
                    found.setdefault(msgid, where)
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.j2")):
            text = path.read_text(encoding="utf-8")
            for match in _TEMPLATE_CALL.finditer(text):
                found.setdefault(match.group(1), str(path.relative_to(ROOT)))
            for match in _TEMPLATE_PLURAL.finditer(text):
                found.setdefault(match.group(1), str(path.relative_to(ROOT)))
                found.setdefault(match.group(2), str(path.relative_to(ROOT)))
    return found


def bypasses() -> list[str]:
    """User-facing text built outside the catalogs: an f-string, a ``.format`` call or a
    concatenation given to ``CommandError``, ``Message``, ``Reply`` or ``DialogResult``, and
    a bare literal given to ``Reply`` (a reply's text comes from a catalog)."""
    found: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name not in {"CommandError", "Message", "Reply", "DialogResult", "error_note"}:
                continue
            texts = list(node.args[:1]) + [
                k.value for k in node.keywords if k.arg in {"text", "error", "message"}
            ]
            for text in texts:
                built = isinstance(text, ast.JoinedStr | ast.BinOp) or (
                    isinstance(text, ast.Call)
                    and isinstance(text.func, ast.Attribute)
                    and text.func.attr == "format"
                )
                bare = name == "Reply" and _literal(text) is not None
                if built or bare:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(text)}")
    return found


def _entries(locale: str) -> dict[str, list[str]]:
    """msgid (singular and plural ids alike) -> its translated forms."""
    with (LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        entries: dict[str, list[str]] = {}
        for m in read_po(handle):
            if not m.id:
                continue
            ids = list(m.id) if isinstance(m.id, tuple | list) else [m.id]
            forms = list(m.string) if isinstance(m.string, tuple | list) else [m.string]
            for msgid in ids:
                entries[str(msgid)] = [str(f or "") for f in forms]
        return entries


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
        for translation in entries.get(message, [""]):
            assert translation, f"untranslated in French: {message!r}"
            assert set(_PLACEHOLDER.findall(translation)) <= set(_PLACEHOLDER.findall(message)) | {
                "count"
            }, message


def test_no_user_facing_text_bypasses_the_catalogs() -> None:
    assert not bypasses(), "\n".join(bypasses())


def test_plural_forms_follow_each_language() -> None:
    en, fr = translator("en"), translator("fr")
    # English: only 1 is singular; French: 0 and 1 are (its catalog's Plural-Forms).
    one, many = "@{name}: {role}, {count} active review", "@{name}: {role}, {count} active reviews"
    assert (
        fr.ngettext(one, many, 0, name="bob", role="r", count=0) == "@bob : r, 0 relecture en cours"
    )
    assert (
        fr.ngettext(one, many, 2, name="bob", role="r", count=2)
        == "@bob : r, 2 relectures en cours"
    )
    assert en.ngettext(one, many, 0, name="bob", role="r", count=0) == "@bob: r, 0 active reviews"
    assert en.ngettext(one, many, 1, name="bob", role="r", count=1) == "@bob: r, 1 active review"


def test_an_error_is_rendered_in_the_readers_language() -> None:
    error = CommandError("unknown option {option}; usage: {usage}", option="--bogus", usage="x")
    assert str(error) == "unknown option --bogus; usage: x"
    assert error.render(translator("fr")) == "option inconnue --bogus ; utilisation : x"
    nested = Message(
        "{reason}. Usage: {usage}",
        {"reason": Message("not a merge request URL: {url}", {"url": "u"}), "usage": "x"},
    )
    assert translator("fr").render(nested).startswith("ce n'est pas")


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
