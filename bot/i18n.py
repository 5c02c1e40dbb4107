"""Messages in the reader's language: gettext catalogs for English and French.

Catalogs are the ``.po`` files in ``locales/<lang>/LC_MESSAGES/messages.po`` (the
``locales`` package, installed with the bot), read once with Babel and compiled in memory
to GNU ``.mo`` form, so lookups and plural rules are the standard library's ``gettext``
(``Plural-Forms`` from each catalog's header). Message ids are the English text with
``{name}`` placeholders; English needs no translation, so a missing entry falls back to the
id (the meta-test keeps the French catalog complete)::

    _ = translator("fr")
    _("Reviewers for {mr}:", mr=url)
    _.ngettext("{count} active review", "{count} active reviews", n, count=n)

A text that is decided in one place and shown in another (an error raised deep in a
parser, shown by the chat dispatcher in the user's language) travels as a ``Message``: the
id and its parameters, rendered only by the reader's translator. A parameter may itself be
a ``Message``; it is rendered in the same language.

Templates use the same catalogs: they receive ``t`` (the reader's translator) in their
context, and call ``t(...)`` or ``t.ngettext(...)``.
"""

from __future__ import annotations

import gettext as stdlib_gettext
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

import locales

LOCALES = ("en", "fr")
DEFAULT_LOCALE = "en"
LOCALES_DIR = Path(locales.__file__).resolve().parent


@dataclass(frozen=True)
class Message:
    """A user-facing text not rendered yet: a catalog id, its parameters and, for a count,
    the plural id (``plural``) and the number (``count``) that chooses the form.

    ``str(message)`` is the English text (for logs and the command line).
    """

    id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    plural: str | None = None
    count: int | None = None

    def render(self, _: Translator) -> str:
        """The text in ``_``'s language."""
        if self.plural is not None:
            return _.ngettext(self.id, self.plural, self.count or 0, **self.params)
        return _(self.id, **self.params)

    def __str__(self) -> str:
        return self.render(translator(DEFAULT_LOCALE))


def normalise(locale: str | None, fallback: str = DEFAULT_LOCALE) -> str:
    """``fr_FR``, ``fr-CA``, ``FR`` -> ``fr``; anything unsupported -> ``fallback``."""
    if not locale:
        return fallback
    language = locale.replace("-", "_").split("_")[0].lower()
    return language if language in LOCALES else fallback


@cache
def _translations(locale: str) -> stdlib_gettext.NullTranslations:
    """The compiled catalog of ``locale`` (fuzzy and untranslated entries left out)."""
    path = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return stdlib_gettext.NullTranslations()
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, parsed, use_fuzzy=False)
    compiled.seek(0)
    return stdlib_gettext.GNUTranslations(compiled)


@cache
def catalog(locale: str) -> dict[str, str]:
    """msgid -> translation for ``locale`` (only the translated singular entries)."""
    translations = _translations(locale)
    entries: dict[Any, str] = getattr(translations, "_catalog", {})
    return {key: value for key, value in entries.items() if isinstance(key, str) and key}


def _format(text: str, params: Mapping[str, Any], _: Translator) -> str:
    if not params:
        return text
    rendered = {k: v.render(_) if isinstance(v, Message) else v for k, v in params.items()}
    return text.format(**rendered)


class Translator:
    """``_`` for one reader: ``_("Hello {name}", name=...)`` and ``_.ngettext(...)``."""

    def __init__(self, locale: str) -> None:
        self.locale = normalise(locale)
        self._translations = _translations(self.locale)

    def __call__(self, message: str, /, **params: Any) -> str:
        """``message`` translated, then its ``{placeholders}`` filled from ``params``."""
        return _format(self._translations.gettext(message), params, self)

    def ngettext(self, singular: str, plural: str, count: int, /, **params: Any) -> str:
        """The form of ``singular``/``plural`` that ``count`` takes in this language
        (French: 0 and 1 are singular), with its placeholders filled."""
        return _format(self._translations.ngettext(singular, plural, count), params, self)

    def render(self, text: str | Message) -> str:
        """A ``Message`` in this language; a plain string (already rendered) as it is."""
        return text.render(self) if isinstance(text, Message) else text


# Annotations across the code base name the translator ``Gettext``.
Gettext = Translator


def gettext(locale: str, message: str, **params: Any) -> str:
    """``message`` in ``locale`` (unknown languages: English)."""
    return translator(locale)(message, **params)


@lru_cache(maxsize=64)
def translator(locale: str) -> Translator:
    """The translator of ``locale`` (``fr_FR`` and ``fr`` share one)."""
    language = normalise(locale)
    return Translator(language) if language == locale else translator(language)


@cache
def environment(package: str) -> jinja2.Environment:
    """The Jinja2 environment of ``package``'s ``templates/``; templates get ``t``, the
    reader's translator, in their context (``{{ t("Hello {name}", name=user) }}``)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=False,  # noqa: S701 - Markdown for GitLab and Mattermost, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
