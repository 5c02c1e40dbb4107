"""Messages in the reader's language: gettext catalogs for English and French.

Catalogs are the ``.po`` files in ``locales/<lang>/LC_MESSAGES/messages.po`` (the
``locales`` package, installed with the bot), read once with Babel. Message ids are the
English text with ``{name}`` placeholders; English needs no translation, so a missing
English entry falls back to the id, and a missing French one too (the meta-test keeps
the catalogs complete)::

    _ = translator("fr")
    _("Reviewers for {mr}:", mr=url)

Templates use the same catalogs: they receive ``t`` (the reader's ``_``) in their context.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from babel.messages.pofile import read_po

import locales

LOCALES = ("en", "fr")
DEFAULT_LOCALE = "en"
LOCALES_DIR = Path(locales.__file__).resolve().parent

Gettext = Callable[..., str]


def normalise(locale: str | None, fallback: str = DEFAULT_LOCALE) -> str:
    """``fr_FR``, ``fr-CA``, ``FR`` -> ``fr``; anything unsupported -> ``fallback``."""
    if not locale:
        return fallback
    language = locale.replace("-", "_").split("_")[0].lower()
    return language if language in LOCALES else fallback


@cache
def catalog(locale: str) -> dict[str, str]:
    """msgid -> translation for ``locale`` (only the translated entries)."""
    path = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=locale)
    messages: dict[str, str] = {}
    for message in parsed:
        translated = isinstance(message.string, str) and message.string and not message.fuzzy
        if message.id and isinstance(message.id, str) and translated:
            messages[message.id] = str(message.string)
    return messages


def gettext(locale: str, message: str, **params: Any) -> str:
    text = catalog(normalise(locale)).get(message, message)
    return text.format(**params) if params else text


def translator(locale: str) -> Gettext:
    """``_`` for one reader: ``_("Hello {name}", name=...)``."""
    language = normalise(locale)

    def _(message: str, **params: Any) -> str:
        return gettext(language, message, **params)

    return _


@cache
def environment(package: str) -> jinja2.Environment:
    """The Jinja2 environment of ``package``'s ``templates/``; templates get ``t``, the
    reader's ``_``, in their context (``{{ t("Hello {name}", name=user) }}``)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=False,  # noqa: S701 - Markdown for GitLab and Mattermost, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
