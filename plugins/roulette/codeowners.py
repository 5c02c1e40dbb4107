"""CODEOWNERS, read exactly as GitLab reads it, with a fast matcher for many paths.

GitLab references: ``doc/user/project/codeowners/reference.md`` and ``advanced.md``, and
the implementation they describe (``ee/lib/gitlab/code_owners/file.rb``): a pattern is
normalised, then matched with Ruby's ``File.fnmatch?(pattern, "/" + path,
FNM_DOTMATCH | FNM_PATHNAME)``:

* ``\\#`` at the start of a pattern becomes ``#``; a backslash before whitespace becomes a
  space (``path\\ with\\ spaces/``);
* a pattern not starting with ``/`` gets ``/**/`` in front (it matches at any depth);
* a pattern ending with ``/`` gets ``**/*`` appended (everything below that directory);
* fnmatch: ``*`` and ``?`` never cross ``/`` but do match a leading dot; ``**/`` at the
  start of a segment is zero or more directories; anywhere else ``**`` is just ``*`` --
  hence ``lib/**`` owns the files exactly one level below ``lib``, which mirrors GitLab's
  documented ``FNM_PATHNAME`` matching (its docs say to write ``lib/`` for "everything
  below"); ``[ab]``, ``[a-z]``, ``[!a]`` and ``[^a]`` are character classes; an
  unterminated ``[`` never matches; ``\\x`` is a literal ``x``; braces are literal (no
  ``FNM_EXTGLOB``); matching is case-sensitive.

Per section, the last matching entry wins and the owners of a path are the union over
sections. An exclusion (``!pattern``) that matches a path takes that section out for the
path, wherever it stands in the section: the docs say "after a pattern is excluded, it
cannot be included again in the same section" and show an exclusion *above* an entry still
winning, which is also what GitLab's code does (``next if matching_entries.any?(&:exclusion?)``).

Where GitLab's code has quirks that contradict its own docs, this module follows the docs
(and the project's acceptance rules):

* GitLab keys a section's entries by normalised pattern in a Ruby hash, so a repeated
  pattern keeps the *position* of its first occurrence (and a repeated pattern replaces an
  exclusion or vice versa). Here every line is an entry and the last match in file order
  wins, as the docs state ("If an entry is duplicated in a section, the last entry is used").
* A section named ``[codeowners]`` would merge into GitLab's unnamed default section; here
  the default section is separate (its name is ``DEFAULT_SECTION``, the empty string).

Other choices, documented where GitLab is silent:

* owners are found in each whitespace-separated token as GitLab's ``ReferenceExtractor``
  finds them: ``@name``, ``@group/sub``, emails, and ``@@developer``, ``@@maintainer`` or
  ``@@owner`` (optionally plural, any case) -- so ``@alice,`` still names ``alice``; a
  token holding no owner (``@``, ``foo``, ``@@guest``) is malformed, ignored, and adds a
  warning naming the line;
* an entry written without any owner tokens takes the default owners of the section header
  it stands under (for a repeated section, the header it follows, as in GitLab); an entry
  whose owner tokens are all malformed has zero owners -- GitLab checks for owner *text*;
* a repeated section is optional only if every header is, and requires the largest count
  any header gives; its ``default_owners`` are the first header's;
* owners written on an exclusion are ignored, with a warning;
* as in GitLab, a line starting with ``[name]`` is a section header whatever follows (text
  not separated by whitespace is ignored, with a warning), and ``[name`` is an entry.

The fast matcher (:meth:`CodeOwners.owners_of_paths`) files every entry by the shape of its
pattern once, in :func:`parse` (see :class:`_Index`), and works out each directory and each
basename once; regexes are compiled only for globs that are reached, and used often.
:func:`reference_owners` is the plain one-regex-per-entry scan the property tests compare it
against; :class:`GitLabScan` is GitLab's own loop (last entry first, first match wins), the
baseline of ``python -m benchmarks.codeowners``.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from itertools import chain
from operator import itemgetter, or_
from typing import Literal, NamedTuple, TypeVar

__all__ = [
    "CODEOWNERS_LOCATIONS",
    "DEFAULT_SECTION",
    "CodeOwners",
    "Entry",
    "GitLabScan",
    "Match",
    "Owner",
    "Section",
    "parse",
    "reference_owners",
]

# GitLab's lookup order; the first file found wins.
CODEOWNERS_LOCATIONS: tuple[str, ...] = ("CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")

# The name of the unnamed section that holds the entries before the first header.
DEFAULT_SECTION = ""

OwnerKind = Literal["name", "group", "email", "role"]


class Owner(NamedTuple):
    """One owner: ``name`` (``@name``: a user, else a group), ``group`` (``@a/b``),
    ``email`` (lower-cased) or ``role`` (``developer``, ``maintainer`` or ``owner``).
    Immutable, ordered by kind then value; a named tuple, so that sets of owners (one per
    matched path) are built at C speed."""

    kind: OwnerKind
    value: str

    def __str__(self) -> str:
        if self.kind == "email":
            return self.value
        return ("@@" if self.kind == "role" else "@") + self.value


class Entry(NamedTuple):
    """A pattern line. ``pattern`` is as written (without the ``!`` of an exclusion);
    ``owners`` are the effective owners (the section's default owners when the line names
    none); an exclusion has no owners. Immutable (a named tuple: a big file has thousands)."""

    pattern: str
    owners: tuple[Owner, ...]
    exclusion: bool
    line: int


@dataclass(frozen=True)
class Section:
    name: str
    optional: bool
    approvals: int
    default_owners: tuple[Owner, ...]
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Match:
    """Why a path has owners: the winning entry of one section."""

    section: str
    pattern: str
    line: int
    owners: tuple[Owner, ...]


# --------------------------------------------------------------------------- parsing

# Ruby's ``\s`` (and ``String#strip``/``#split``) is ASCII whitespace.
_WS = " \t\n\v\f\r"
_SPLIT_RE = re.compile(r"(?<!\\)[ \t\n\v\f\r]+")
# What str.split() takes for whitespace in ASCII besides _WS: a text without these (and
# without "\\") splits the same with str.split() as with _SPLIT_RE, several times faster.
# Looked for with "in" (a memchr scan), fifty times quicker than a regex character class.
_OTHER_ASCII_WS = "\x1c\x1d\x1e\x1f"
_ESCAPED_WS_RE = re.compile(r"\\[ \t\n\v\f\r]+")
_TOKEN_RE = re.compile(r"[^ \t\n\v\f\r]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_HEADER_RE = re.compile(r"(\^)?\[([^\]]*)\](?:\[([^\]]*)\])?(.*)", re.DOTALL)
# GitLab's ReferenceExtractor: a role is a whole word; names and emails are searched for.
_ROLE_RE = re.compile(r"@@(developer|maintainer|owner)s?", re.IGNORECASE)
# A namespace path (Gitlab::PathRegex): components joined by "/", after an "@" that does
# not follow a word character or another "@".
_COMPONENT = r"(?:[A-Za-z0-9_.][A-Za-z0-9_.\-]*[A-Za-z0-9_\-]|[A-Za-z0-9_])"
_NAME_RE = re.compile(rf"(?<![A-Za-z0-9_@])@({_COMPONENT}(?:/{_COMPONENT})*)")
# EMAIL_REGEXP: ends with a word character.
_EMAIL_RE = re.compile(r"[^@ \t\n\v\f\r]{1,100}@[^@ \t\n\v\f\r]{1,255}(?<=[A-Za-z0-9_])")


# Entry(...) and Owner(...) through tuple.__new__: the named tuple's own __new__ is a
# Python function, and a big file makes thousands of entries.
_new_entry = tuple.__new__


def _token_owners(token: str) -> tuple[Owner, ...]:
    """The owners GitLab finds in one whitespace-separated token (``@a,`` holds ``@a``),
    each once, in the order found."""
    if token[:1] == "@" and (whole := _NAME_RE.match(token)) and whole.end() == len(token):
        # Just one name, the common case: no role ("@@"), no other "@", so no email.
        name = whole.group(1)
        return (_new_entry(Owner, ("group" if "/" in name else "name", name)),)
    # Just an email ("a@b.c"): one "@", not first, and no name in the token (an "@" after
    # a letter or digit starts none).
    email = _EMAIL_RE.fullmatch(token) if token.count("@") == 1 and token[0] != "@" else None
    if email and not _NAME_RE.search(token):
        return (_new_entry(Owner, ("email", email.group().lower())),)
    found: list[Owner] = []
    if role := _ROLE_RE.fullmatch(token):
        found.append(Owner("role", role.group(1).lower()))
    for name in _NAME_RE.finditer(token):
        found.append(Owner("group" if "/" in name.group(1) else "name", name.group(1)))
    found.extend(Owner("email", email.lower()) for email in _EMAIL_RE.findall(token))
    return tuple(dict.fromkeys(found))


class _OwnerReader:
    """Reads owner texts, each distinct token and text once (a big file repeats them)."""

    def __init__(self, plain: bool = False) -> None:
        self.plain = plain  # str.split() finds the tokens (see _OTHER_ASCII_WS)
        self.tokens: dict[str, tuple[Owner, ...]] = {}
        # text -> (has tokens, owners, malformed tokens)
        self.texts: dict[str, tuple[bool, tuple[Owner, ...], tuple[str, ...]]] = {}

    def read(self, text: str, line: int, warnings: list[str]) -> tuple[bool, tuple[Owner, ...]]:
        """Whether ``text`` has owner tokens, and the owners found in them, de-duplicated; a
        token holding no owner at all is malformed (GitLab's ``malformed_entry_owner``)."""
        known = self.texts.get(text) or self.new(text)
        for token in known[2]:
            warnings.append(f"line {line}: ignored malformed owner {token!r}")
        return known[0], known[1]

    def new(self, text: str) -> tuple[bool, tuple[Owner, ...], tuple[str, ...]]:
        """Read a text not read before: ``(has tokens, owners, malformed tokens)``."""
        tokens = text.split() if self.plain else _TOKEN_RE.findall(text)
        get = self.tokens.get
        # A text names one to a few owners: tuples added up are the quickest here.
        every: tuple[Owner, ...] = ()
        malformed: tuple[str, ...] = ()
        for token in tokens:
            owners = get(token)
            if owners is None:
                owners = self._token(token)
            if owners:
                every += owners
            else:
                malformed += (token,)
        if len(every) > 1 and len(set(every)) < len(every):  # named twice: kept once
            every = tuple(dict.fromkeys(every))
        read = self.texts[text] = (bool(tokens), every, malformed)
        return read

    def _token(self, token: str) -> tuple[Owner, ...]:
        owners = self.tokens[token] = _token_owners(token)
        return owners


class _SectionBuilder:
    def __init__(
        self, name: str, optional: bool, approvals: int, default_owners: tuple[Owner, ...]
    ) -> None:
        self.name = name
        self.optional = optional
        self.approvals = approvals
        self.default_owners = default_owners
        self.entries: list[Entry] = []

    def build(self) -> Section:
        return Section(
            self.name, self.optional, self.approvals, self.default_owners, tuple(self.entries)
        )


def _parse_header(
    line: str, number: int, warnings: list[str], reader: _OwnerReader
) -> tuple[str, bool, int, tuple[Owner, ...]] | None:
    """``(name, optional, approvals, default owners)`` if ``line`` is a section header."""
    match = _HEADER_RE.fullmatch(line)
    if match is None:
        return None  # e.g. "[Oops": an ordinary entry, as in GitLab
    caret, name, count, rest = match.groups()
    if not name.strip(_WS):
        warnings.append(f"line {number}: section header without a name, read as a pattern")
        return None
    approvals = 1
    if count is not None:
        if _DIGITS_RE.fullmatch(count):
            approvals = max(int(count), 1)  # GitLab: 0 requires one approval
        else:
            warnings.append(f"line {number}: invalid approval count {count!r}, using 1")
    optional = caret is not None
    if optional and count is not None:
        warnings.append(f"line {number}: an optional section takes no approval count")
    defaults: tuple[Owner, ...] = ()
    if rest and rest[0] in _WS:
        _, defaults = reader.read(rest, number, warnings)
    elif rest:
        # GitLab's header regex is not anchored at the end and silently drops this text.
        warnings.append(f"line {number}: ignored text after section header: {rest!r}")
    return name, optional, approvals, defaults


def parse(text: str) -> CodeOwners:
    """Parse a CODEOWNERS file and compile its matchers.

    A big file (:data:`_PARSE_PAUSE_FROM` characters or more) is parsed with Python's
    cyclic garbage collector paused, as a big match is (see :func:`_collector_paused`):
    its entries, owners and index live as long as the file, so the collections their
    making would start free nothing, and the full ones walk all that the process keeps
    (4 % fewer instructions for 5,000 entries in a process that holds four such files,
    collections included)."""
    if len(text) < _PARSE_PAUSE_FROM:
        return _parse(text)
    with _collector_paused():
        return _parse(text)


def _parse(text: str) -> CodeOwners:
    warnings: list[str] = []
    default = _SectionBuilder(DEFAULT_SECTION, False, 1, ())
    sections: list[_SectionBuilder] = [default]
    by_key: dict[str, _SectionBuilder] = {}
    current, defaults = default, default.default_owners
    text = text.removeprefix("\ufeff")
    plain = text.isascii() and not any(space in text for space in _OTHER_ASCII_WS)
    reader = _OwnerReader(plain)
    known = reader.texts  # most owner texts repeat: their reading is looked up here first
    # str.split() finds the end of every pattern: no escaped whitespace to keep
    simple = plain and "\\" not in text
    append = current.entries.append
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(_WS)
        if not line:
            continue
        first = line[0]
        if first == "#":
            continue
        if first in "[^" and (header := _parse_header(line, number, warnings, reader)):
            name, optional, approvals, defaults = header
            key = name.casefold()
            found = by_key.get(key)
            if found is None:
                found = by_key[key] = _SectionBuilder(name, optional, approvals, defaults)
                sections.append(found)
            else:
                found.optional = found.optional and optional
                found.approvals = max(found.approvals, approvals)
            current, append = found, found.entries.append
            continue
        if simple or (plain and "\\" not in line):
            parts = line.split(None, 1)
        else:
            parts = _SPLIT_RE.split(line, 1)
        if len(parts) == 2:
            pattern, owner_text = parts
        else:
            pattern, owner_text = parts[0], ""
        if first == "!":
            pattern = pattern[1:]
            for token in _TOKEN_RE.findall(owner_text):
                warnings.append(f"line {number}: ignored owner {token!r} on an exclusion")
            append(_new_entry(Entry, (pattern, (), True, number)))
            continue
        read = known.get(owner_text) or reader.new(owner_text)
        for token in read[2]:  # a warning for each line that has it
            warnings.append(f"line {number}: ignored malformed owner {token!r}")
        append(_new_entry(Entry, (pattern, read[1] if read[0] else defaults, False, number)))
    return CodeOwners([s.build() for s in sections], warnings)


# --------------------------------------------------------------------------- patterns

# A pattern, after normalisation, is "/" followed by items: _GLOBSTAR ("**/" at the start
# of a segment) or a segment, a list of atoms. Segments are separated by "/".
_GLOBSTAR = "**/"


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Star:
    pass


@dataclass(frozen=True)
class _Any:  # "?"
    pass


@dataclass(frozen=True)
class _Class:
    negate: bool
    ranges: tuple[tuple[str, str], ...]


_Atom = _Lit | _Star | _Any | _Class
_Segment = tuple[_Atom, ...]
_Item = _Segment | str  # str is always _GLOBSTAR


class _NeverMatches(Exception):
    """The pattern holds an unterminated ``[``: Ruby's fnmatch then never matches."""


def _normalize_pattern(pattern: str) -> str:
    """GitLab's ``normalize_pattern``: always starts with ``/``."""
    if pattern.startswith("\\#"):
        pattern = pattern[1:]
    pattern = _ESCAPED_WS_RE.sub(" ", pattern)
    if not pattern.startswith("/"):
        pattern = "/**/" + pattern
    if pattern.endswith("/"):
        pattern += "**/*"
    return pattern


def _parse_class(pattern: str, i: int) -> tuple[_Class, int]:
    """The bracket expression after the ``[`` at ``i - 1``, as Ruby's ``bracket()``."""
    n = len(pattern)
    negate = i < n and pattern[i] in "!^"
    i += negate
    ranges: list[tuple[str, str]] = []
    while True:
        if i >= n:
            raise _NeverMatches
        if pattern[i] == "]":
            return _Class(negate, tuple(ranges)), i + 1
        if pattern[i] == "\\":
            i += 1
            if i >= n:
                raise _NeverMatches
        low = pattern[i]
        i += 1
        if i >= n:
            raise _NeverMatches
        if pattern[i] == "-" and i + 1 < n and pattern[i + 1] != "]":
            i += 1
            if pattern[i] == "\\":
                i += 1
                if i >= n:
                    raise _NeverMatches
            ranges.append((low, pattern[i]))
            i += 1
        else:
            ranges.append((low, low))


def _parse_pattern(normalized: str) -> list[_Item]:
    """Split a normalised pattern (``/...``) into globstars and segments of atoms."""
    items: list[_Item] = []
    n = len(normalized)
    i = 1
    while True:
        # At the start of a segment.
        if normalized.startswith("**/", i):
            if not items or items[-1] != _GLOBSTAR:
                items.append(_GLOBSTAR)
            i += 3
            continue
        atoms: list[_Atom] = []
        literal: list[str] = []
        ended = False
        while i < n:
            char = normalized[i]
            if char == "/":
                i += 1
                ended = True
                break
            if char == "\\":
                if i + 1 >= n:  # a trailing backslash escapes nothing
                    i += 1
                    continue
                if normalized[i + 1] == "/":  # fnmatch treats "\/" as a separator
                    i += 2
                    ended = True
                    break
                literal.append(normalized[i + 1])
                i += 2
                continue
            if char in "*?[":
                if literal:
                    atoms.append(_Lit("".join(literal)))
                    literal = []
                if char == "*":
                    while i < n and normalized[i] == "*":
                        i += 1
                    atoms.append(_Star())
                elif char == "?":
                    atoms.append(_Any())
                    i += 1
                else:
                    bracket, i = _parse_class(normalized, i + 1)
                    atoms.append(bracket)
                continue
            literal.append(char)
            i += 1
        if literal:
            atoms.append(_Lit("".join(literal)))
        items.append(tuple(atoms))
        if not ended:
            return items


def _class_regex(atom: _Class) -> str:
    parts: list[str] = []
    for low, high in atom.ranges:
        if low == high:
            parts.append(re.escape(low))
        elif low < high:
            parts.append(f"{re.escape(low)}-{re.escape(high)}")
        else:  # Ruby still matches either end of a reversed range
            parts.append(re.escape(low) + re.escape(high))
    body = "".join(parts)
    if atom.negate:
        return f"[^{body}/]"
    return f"(?!/)[{body}]" if body else "(?!)"


def _segment_regex(segment: _Segment) -> str:
    out: list[str] = []
    for atom in segment:
        if isinstance(atom, _Lit):
            out.append(re.escape(atom.text))
        elif isinstance(atom, _Star):
            out.append("[^/]*")
        elif isinstance(atom, _Any):
            out.append("[^/]")
        else:
            out.append(_class_regex(atom))
    return "".join(out)


def _items_regex(items: Sequence[_Item]) -> str:
    out = ["/"]
    last = len(items) - 1
    for index, item in enumerate(items):
        if isinstance(item, str):
            out.append("(?:[^/]*/)*")
        else:
            out.append(_segment_regex(item))
            if index != last:
                out.append("/")
    return "".join(out)


def _pattern_items(pattern: str) -> list[_Item] | None:
    """The items of a pattern as written; None if it can never match."""
    try:
        return _parse_pattern(_normalize_pattern(pattern))
    except _NeverMatches:
        return None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """The one regex (for ``fullmatch``) equivalent to GitLab's fnmatch of ``pattern``."""
    items = _pattern_items(pattern)
    return re.compile("(?!)" if items is None else _items_regex(items))


def _normalize_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def reference_owners(codeowners: CodeOwners, path: str) -> frozenset[Owner]:
    """The plain implementation: every entry's regex, in order, section by section."""
    target = _normalize_path(path)
    owners: set[Owner] = set()
    for section, regexes in zip(codeowners.sections, codeowners._reference_regexes(), strict=True):
        winner: Entry | None = None
        excluded = False
        for entry, regex in zip(section.entries, regexes, strict=True):
            if regex.fullmatch(target):
                if entry.exclusion:
                    excluded = True
                else:
                    winner = entry
        if winner is not None and not excluded:
            owners.update(winner.owners)
    return frozenset(owners)


# --------------------------------------------------------------------------- GitLab's scan


def _gitlab_pattern(pattern: str) -> str:
    """GitLab's ``normalize_pattern`` (``Gitlab::CodeOwners::File``), step by step."""
    if pattern == "*":
        return "/**/*"
    if pattern.startswith("\\#"):
        pattern = pattern[1:]
    pattern = _ESCAPED_WS_RE.sub(" ", pattern)
    if not pattern.startswith("/"):
        pattern = "/**/" + pattern
    if pattern.endswith("/"):
        pattern += "**/*"
    return pattern


def _fnmatch_bracket(pattern: str, i: int) -> tuple[str, int] | None:
    """The bracket expression opened at ``i - 1`` as a regex class and the index after its
    ``]`` -- Ruby's ``bracket()`` in ``dir.c``; None if it is never closed. A range whose
    ends are reversed still matches either end, as in Ruby; no class matches ``/``."""
    n = len(pattern)
    negate = i < n and pattern[i] in "!^"
    i += negate
    parts: list[str] = []
    while i < n and pattern[i] != "]":
        low = i + 1 if pattern[i] == "\\" else i
        if low >= n:
            return None
        i = low + 1
        if i >= n:
            return None
        if pattern[i] == "-" and (i + 1 >= n or pattern[i + 1] != "]"):
            high = i + 2 if i + 1 < n and pattern[i + 1] == "\\" else i + 1
            if high >= n:
                return None
            i = high + 1
            a, b = pattern[low], pattern[high]
            parts.append(f"{re.escape(a)}-{re.escape(b)}" if a <= b else re.escape(a + b))
        else:
            parts.append(re.escape(pattern[low]))
    if i >= n:
        return None
    body = "".join(parts)
    if negate:
        return f"[^/{body}]", i + 1
    return (f"(?!/)[{body}]" if body else "(?!)"), i + 1


def _fnmatch_regex(pattern: str) -> str:
    """A regex (for ``fullmatch``) that matches what Ruby's ``File.fnmatch?(pattern, path,
    File::FNM_DOTMATCH | File::FNM_PATHNAME)`` matches, written from Ruby's ``dir.c``:
    ``*`` and ``?`` stay within a path segment, ``**/`` at the start of a segment is zero or
    more directories (dot directories too), ``[...]`` is a class (``!`` or ``^`` negates; an
    unclosed one never matches), ``\\x`` is ``x`` (``\\/`` is a separator) and a trailing
    backslash is dropped."""
    out: list[str] = []
    n = len(pattern)
    i = 0
    start = True  # at the start of a segment
    while i < n:
        if start and pattern.startswith("**/", i):
            while pattern.startswith("**/", i):
                i += 3
            out.append("(?:[^/]*/)*")
            continue
        start = False
        char = pattern[i]
        if char == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            bracket = _fnmatch_bracket(pattern, i + 1)
            if bracket is None:
                return "(?!)"
            part, i = bracket
            out.append(part)
        elif char == "\\":
            if i + 1 < n:
                out.append(re.escape(pattern[i + 1]))
                start = pattern[i + 1] == "/"
            i += 2
        else:
            out.append(re.escape(char))
            start = char == "/"
            i += 1
    return "".join(out)


class GitLabScan:
    """The owners of a path found the way GitLab finds them (``Gitlab::CodeOwners::File
    #entries_for_path``): in each section, the entries are tried last first and the first
    match wins, unless an exclusion of the section matches the path; every match is
    ``File.fnmatch?`` of the normalised pattern against ``"/" + path``.

    This is the baseline the benchmark measures the matcher against, and a second,
    independent check of it in the tests: its fnmatch is its own translation of Ruby's
    (one regex compiled per entry, here, once). It differs from GitLab only where
    :class:`CodeOwners` follows GitLab's docs rather than its code: every line is an entry
    (GitLab keeps one entry per distinct pattern).

    By default it is quicker than GitLab's loop: the exclusions are tried first, and the
    entries stop at the first match. ``every_entry=True`` runs the loop as GitLab's code
    writes it: every entry of a section is tested (``section_entries.keys.reverse.select
    { |pattern| path_matches?(pattern, path) }``), then the section is skipped if an
    exclusion is among the matches, else the first match wins. Both give the same owners.
    """

    def __init__(self, codeowners: CodeOwners, *, every_entry: bool = False) -> None:
        self._sections: list[tuple[list[_Test], list[tuple[_Test, tuple[Owner, ...]]]]] = []
        self._as_written: list[list[tuple[_Test, Entry]]] = []
        self.every_entry = every_entry
        for section in codeowners.sections:
            exclusions: list[_Test] = []
            entries: list[tuple[_Test, tuple[Owner, ...]]] = []
            as_written: list[tuple[_Test, Entry]] = []
            for entry in reversed(section.entries):
                test = re.compile(_fnmatch_regex(_gitlab_pattern(entry.pattern))).fullmatch
                as_written.append((test, entry))
                if entry.exclusion:
                    exclusions.append(test)
                else:
                    entries.append((test, entry.owners))
            self._sections.append((exclusions, entries))
            self._as_written.append(as_written)

    def owners_of(self, path: str) -> frozenset[Owner]:
        """The owners of ``path`` (relative to the repository, with or without a leading
        ``/``): the union over sections of the winning entry's owners."""
        target = path if path.startswith("/") else "/" + path
        owners: set[Owner] = set()
        if self.every_entry:
            for section_entries in self._as_written:
                matching = [entry for test, entry in section_entries if test(target)]
                if matching and not any(entry.exclusion for entry in matching):
                    owners.update(matching[0].owners)
            return frozenset(owners)
        for exclusions, entries in self._sections:
            if any(test(target) for test in exclusions):
                continue
            for test, entry_owners in entries:
                if test(target):
                    owners.update(entry_owners)
                    break
        return frozenset(owners)


# --------------------------------------------------------------------------- fast matcher

# Every entry has a global number ``gid``: the sections' entries laid end to end, so that
# within a section a later entry has a higher number, and a section's exclusions come
# after all its other entries (an exclusion that matches a path beats every entry of its
# section, wherever it stands). A set of entries is an int whose bit ``gid`` is set for
# each (a "mask"): unions and intersections of thousands of entries are single operations
# in C, and a section's winner is the highest bit left in its range; when that is an
# exclusion, the section gives no owners. A "best" map (``matches_of``) holds, per section
# index, the number of the winning entry; an exclusion's number is offset by the number
# of entries.
_Best = dict[int, int]
_Test = Callable[[str], object]  # true if a name (or a directory) passes
_EMPTY: frozenset[Owner] = frozenset()
_CACHE_LIMIT = 200_000  # directory and basename states and answers kept per file
_CACHE_BYTES = 32 << 20  # what their masks may take, about
_PAUSE_FROM = 64  # paths in a match from which the garbage collector is paused
# Sharing derived states (_Index._dir) stops once this many lookups found fewer than one
# hit in _SHARING_HITS: a miss costs a key and an entry and saves nothing.
_SHARING_TRIAL = 512
_SHARING_HITS = 4
_PARSE_PAUSE_FROM = 16_384  # characters of a file from which parse pauses it
_GLOB_SPLIT_RE = re.compile(r"(\*+|\?)")


def _mask(gids: Collection[int]) -> int:
    """The mask of the entries numbered ``gids``."""
    count = len(gids)
    if count < 2:  # most rules have one entry or none (0 | mask would copy the mask)
        return 1 << next(iter(gids)) if count else 0
    if count < 16:
        mask = 0
        for gid in gids:
            mask |= 1 << gid
        return mask
    bits = bytearray((max(gids) >> 3) + 1)  # one pass, not one big int per entry
    for gid in gids:
        bits[gid >> 3] |= 1 << (gid & 7)
    return int.from_bytes(bits, "little")


class _Glob:
    """A segment's glob (``[a-m]*.go``, ``?ain.*``) tested in Python, without compiling a
    regex. Between its ``*`` it is runs of fixed width: the first run must fit at the start
    of the name, the last at its end, and each one between at the leftmost place after the
    one before it: the ``*`` around a run take whatever it leaves, and the leftmost place
    leaves the most room to the runs after it. No backtracking: each run is tried at most
    once at each place."""

    __slots__ = ("head", "head_width", "middles", "starred", "tail", "tail_width", "width")

    def __init__(self, atoms: _Segment) -> None:
        runs: list[list[_Atom]] = [[]]
        for atom in atoms:
            if isinstance(atom, _Star):
                runs.append([])
            else:
                runs[-1].append(atom)
        self.starred = len(runs) > 1  # else the name has the one width of the head
        self.head = tuple(runs[0])
        self.tail: _Segment = tuple(runs[-1]) if self.starred else ()
        self.head_width, self.tail_width = _width(self.head), _width(self.tail)
        self.middles = [(tuple(run), _width(run)) for run in runs[1:-1] if run]
        self.width = self.head_width + self.tail_width + sum(w for _, w in self.middles)

    def __call__(self, name: str) -> bool:
        """Whether ``name`` (no ``/`` in it) matches the glob."""
        size = len(name)
        if not self.starred:
            return size == self.width and _fits(self.head, name, 0)
        if size < self.width or not _fits(self.head, name, 0):
            return False
        end = size - self.tail_width
        if not _fits(self.tail, name, end):
            return False
        at = self.head_width
        for run, width in self.middles:
            first = run[0]
            while True:
                if isinstance(first, _Lit):  # jump to where its first literal is
                    at = name.find(first.text, at, end)
                    if at < 0:
                        return False
                if at + width > end:
                    return False
                if _fits(run, name, at):
                    break
                at += 1
            at += width
        return True


def _width(run: Sequence[_Atom]) -> int:
    """The length of the names a run of atoms (no ``*``) matches."""
    return sum(len(atom.text) if isinstance(atom, _Lit) else 1 for atom in run)


def _fits(run: Sequence[_Atom], name: str, at: int) -> bool:
    """Whether the run of atoms (no ``*``) matches ``name`` from index ``at``; the caller
    makes sure that the run's width fits there."""
    for atom in run:
        if isinstance(atom, _Lit):
            if not name.startswith(atom.text, at):
                return False
            at += len(atom.text)
            continue
        if isinstance(atom, _Class) and not _in_class(atom, name[at]):
            return False
        at += 1
    return True


def _in_class(atom: _Class, char: str) -> bool:
    for low, high in atom.ranges:  # a loop, not any() over a generator: a third of the time
        if (low <= char <= high) if low <= high else char in (low, high):
            return not atom.negate
    return atom.negate


class _Lazy:
    """A glob test that compiles its regex only once it has been used a few times: most
    of a big file's globs are tested a handful of times, or never (compiling costs as
    much as dozens of tests in Python)."""

    __slots__ = ("calls", "glob", "match", "source")

    def __init__(self, source: str, atoms: _Segment | None = None) -> None:
        self.source = source
        self.glob = _Glob(atoms) if atoms is not None else None
        self.calls = 0
        self.match: Callable[[str], re.Match[str] | None] | None = None

    def __call__(self, text: str) -> bool:
        match = self.match
        if match is None:
            if self.glob is not None and self.calls < 32:
                self.calls += 1
                return self.glob(text)
            match = self.match = re.compile(self.source).fullmatch
        return match(text) is not None


class _Seg:
    """One segment of a pattern (what stands between two ``/``), as the index sees it:
    ``text`` if it is literal; else ``prefix`` and ``suffix``, its literal ends, and
    ``simple`` if it is just ``prefix*suffix``. ``key`` tells segments apart (equal keys,
    equal segments)."""

    __slots__ = (
        "_atoms",
        "_pieces",
        "_test",
        "group",
        "key",
        "prefix",
        "simple",
        "suffix",
        "text",
    )

    def __init__(
        self,
        key: str,
        text: str | None,
        prefix: str,
        suffix: str,
        simple: bool,
        pieces: list[str] | None = None,
        atoms: _Segment | None = None,
    ) -> None:
        self.key = key
        self.text = text
        self.prefix = prefix
        self.suffix = suffix
        self.simple = simple
        self._pieces = pieces
        self._atoms = atoms
        self._test: _Test | None = None
        self.group: _Group | None = None  # its group in the index being built

    @classmethod
    def written(cls, raw: str) -> _Seg:
        """A segment written without ``[`` or ``\\``: literal text, ``*`` and ``?``."""
        if "*" not in raw and "?" not in raw:
            return cls(raw, raw, raw, raw, False)
        pieces = _GLOB_SPLIT_RE.split(raw)  # literal, glob, literal, ..., literal
        simple = len(pieces) == 3 and pieces[1][0] == "*"
        return cls(raw, None, pieces[0], pieces[-1], simple, pieces=pieces)

    @classmethod
    def parsed(cls, atoms: _Segment) -> _Seg:
        """A segment from :func:`_parse_pattern` (escapes and classes)."""
        if not atoms:
            return cls("", "", "", "", False)
        first, last = atoms[0], atoms[-1]
        if len(atoms) == 1 and isinstance(first, _Lit):
            return cls(first.text, first.text, first.text, first.text, False)
        prefix = first.text if isinstance(first, _Lit) else ""
        suffix = last.text if isinstance(last, _Lit) else ""
        stars = [atom for atom in atoms if not isinstance(atom, _Lit)]
        simple = len(stars) == 1 and isinstance(stars[0], _Star) and len(atoms) <= 3
        return cls("\0" + _segment_regex(atoms), None, prefix, suffix, simple, atoms=atoms)

    def atoms(self) -> _Segment:
        """The segment's atoms."""
        if self._atoms is not None:
            return self._atoms
        if self._pieces is None:
            return (_Lit(self.key),) if self.key else ()
        atoms: list[_Atom] = []
        for number, piece in enumerate(self._pieces):
            if number % 2 == 0:
                if piece:
                    atoms.append(_Lit(piece))
            else:
                atoms.append(_Star() if piece[0] == "*" else _Any())
        return tuple(atoms)

    def source(self) -> str:
        """The regex of the segment."""
        if self._atoms is not None:
            return _segment_regex(self._atoms)
        if self._pieces is None:
            return re.escape(self.key)
        out: list[str] = []
        for number, piece in enumerate(self._pieces):
            if number % 2 == 0:
                out.append(re.escape(piece))
            else:
                out.append("[^/]*" if piece[0] == "*" else "[^/]")
        return "".join(out)

    @property
    def star(self) -> bool:
        """The segment is ``*``: any name."""
        return self.simple and not self.prefix and not self.suffix

    def test(self) -> _Test | None:
        """A test of a name against the segment; None for ``*`` (every name passes)."""
        if self._test is None and not self.star:
            self._test = _segment_test(self)
        return self._test


def _segment_test(seg: _Seg) -> _Test:
    text = seg.text
    if text is not None:
        return text.__eq__
    if not seg.simple:
        atoms = seg.atoms()
        lazy = _Lazy(seg.source(), atoms)
        if any(isinstance(atom, _Star) for atom in atoms):
            return lazy
        width = sum(len(a.text) if isinstance(a, _Lit) else 1 for a in atoms)
        return lambda name: len(name) == width and lazy(name)  # "pkg?", "v[0-9]": one size
    prefix, suffix = seg.prefix, seg.suffix
    size = len(prefix) + len(suffix)
    if not suffix:
        return lambda name: name.startswith(prefix)
    if not prefix:
        return lambda name: name.endswith(suffix)
    return lambda name: len(name) >= size and name.startswith(prefix) and name.endswith(suffix)


_Part = _Seg | str  # str is always _GLOBSTAR


_Active = dict[str, list[tuple[str, int, "_Rules"]]]
_K = TypeVar("_K")
_Answers = dict["_Dir", frozenset[Owner]]


class _Rules:
    """What a directory condition gives when a directory meets it: the mask of the entries
    whose directory part then holds for every file below it (``below``: ``X/**/*``,
    ``X/**/L``) and of those that hold for the files directly in it (``here``: ``X/*``,
    ``X/L``); an entry with a last segment ``L`` still needs the basename to pass it (the
    basename's mask, :meth:`_Index._base`). Filled as lists of entry numbers, then
    frozen by :meth:`freeze`."""

    __slots__ = ("activate", "below", "below_gids", "here", "here_gids", "ready")

    def __init__(self) -> None:
        self.below_gids: list[int] = []
        self.here_gids: list[int] = []
        # for heads "/a/b/**/c/d": last name "d" -> ("/c/d", shortest directory, rules)
        self.activate: _Active | None = None
        self.ready = False  # frozen: done when a directory first meets the rules

    def freeze(self) -> _Rules:
        """Build the masks ``below`` and ``here`` from the entry numbers (most rules have
        one entry or none: those without a call)."""
        self.ready = True
        gids = self.below_gids
        self.below = (1 << gids[0] if gids else 0) if len(gids) < 2 else _mask(gids)
        gids = self.here_gids
        self.here = (1 << gids[0] if gids else 0) if len(gids) < 2 else _mask(gids)
        return self


class _Named:
    """What a directory's name gives: ``rules`` met by every directory so named (``b/``),
    ``deep`` by those that have a parent (``**/*/b/``), and ``parents``: the name of the
    parent -> (needle, rules) met when the directory's path also ends with the needle
    (``a/b/``: no needle; ``x/a/b/``: ``/x/a/b``)."""

    __slots__ = ("deep", "parents", "rules")

    def __init__(self) -> None:
        self.rules: _Rules | None = None
        self.deep: _Rules | None = None
        self.parents: dict[str, list[tuple[str | None, _Rules]]] | None = None

    def meet_below(self, directory: str, parent: str, met: list[_Rules]) -> None:
        """Add to ``met`` the rules that ``directory``, so named, meets below the root's
        level, its parent directory being named ``parent``: ``deep`` and ``parents``
        (``rules`` are :meth:`_Index._dir`'s to add)."""
        if self.deep is not None:
            met.append(self.deep)
        if self.parents is not None:
            for needle, rules in self.parents.get(parent, ()):
                if needle is None or directory.endswith(needle):
                    met.append(rules)


def _merged(into: _Rules | None, rules: _Rules) -> _Rules:
    """The rules of ``into`` and of ``rules`` (not frozen yet) as one."""
    if into is None:
        return rules
    merged = _Rules()
    merged.below_gids = [*into.below_gids, *rules.below_gids]
    merged.here_gids = [*into.here_gids, *rules.here_gids]
    return merged


class _Group:
    """The entries sharing one last segment ``L``: those that are just ``**/L`` and those
    whose directory part must match too; ``mask`` (made by :meth:`freeze`) holds both."""

    __slots__ = ("gids", "mask", "ready", "test")

    def __init__(self, test: _Test | None) -> None:
        self.test = test
        self.ready = False  # frozen: done when a basename first passes the test
        self.gids: list[int] = []
        self.mask = 0

    def freeze(self) -> None:
        self.ready = True
        self.mask = _mask(self.gids)


class _Head:
    """A directory part that is a real glob: literal-or-glob segments anchored at the root
    (``prefix``), a ``**`` (unless ``fixed``), segments at the end (``suffix``); anything
    else (several ``**`` with segments between them) is a regex, compiled when first
    needed. Tested only at directories that have the name it is filed under."""

    __slots__ = ("fixed", "parts", "prefix", "regex", "rules", "size", "suffix", "sure", "tests")

    def __init__(self, parts: list[_Part]) -> None:
        self.parts = parts
        self.rules = _Rules()
        self.regex: _Lazy | None = None
        self.tests: list[tuple[int, _Test]] | None = None
        self.size = 0
        stars = [number for number, part in enumerate(parts) if part == _GLOBSTAR]
        segments = [part for part in parts if isinstance(part, _Seg)]
        self.fixed = not stars
        if self.fixed:
            self.prefix, self.suffix = segments, []
        else:
            self.prefix = [p for p in parts[: stars[0]] if isinstance(p, _Seg)]
            self.suffix = [p for p in parts[stars[-1] + 1 :] if isinstance(p, _Seg)]
            if len(self.prefix) + len(self.suffix) != len(segments):
                self.regex = _Lazy(_parts_regex(parts))
        self.size = len(self.prefix) + len(self.suffix)  # the fewest names it matches
        # filed by depth and literal names, nothing is left to test but "*"
        self.sure = self.fixed and all(s.text is not None or s.star for s in self.prefix)

    def rooted(self) -> tuple[str, str] | None:
        """``("/a/b", "/c/d")`` for ``/a/b/**/c/d``: literal names at both ends."""
        if self.fixed or self.regex is not None or not self.prefix or not self.suffix:
            return None
        if any(s.text is None for s in (*self.prefix, *self.suffix)):
            return None
        return "".join(f"/{s.text}" for s in self.prefix), "".join(
            f"/{s.text}" for s in self.suffix
        )

    def keys(self) -> list[tuple[bool, int, str]]:
        """Where it can be filed: ``(False, i, name)``: the ``i``-th name of the directory
        is ``name``; ``(True, j, name)``: the ``j``-th name from the end."""
        keys = [(False, i, s.text) for i, s in enumerate(self.prefix) if s.text is not None]
        last = len(self.prefix) - 1 if self.fixed else len(self.suffix) - 1
        ends = self.prefix if self.fixed else self.suffix
        keys += [(True, last - j, s.text) for j, s in enumerate(ends) if s.text is not None]
        return keys

    def matches(self, directory: str, names: list[str]) -> bool:
        """``directory`` (``/a/b``, split into ``names``) matches the head."""
        if self.regex is not None:
            return self.regex(directory)
        tests = self.tests
        if tests is None:  # made on first use: (index in names, test), "*" left out
            ends = len(self.suffix)
            found = [(i, s.test()) for i, s in enumerate(self.prefix)]
            found += [(i - ends, s.test()) for i, s in enumerate(self.suffix)]
            self.tests = tests = [(i, test) for i, test in found if test is not None]
        count = len(names)
        if count != self.size if self.fixed else count < self.size:
            return False
        return all(test(names[index]) for index, test in tests)


def _passes(head: _Head, directory: str, names: list[str]) -> bool:
    """``directory`` (split into ``names``) matches ``head``, found under one of its names."""
    return len(names) >= head.size if head.sure else head.matches(directory, names)


def _parts_regex(parts: Sequence[_Part]) -> str:
    out = ["/"]
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if isinstance(part, str):
            out.append("(?:[^/]*/)*")
        else:
            out.append(part.source())
            if index != last:
                out.append("/")
    return "".join(out)


class _Dir:
    """A directory's state: ``inherited`` is the mask of the entries whose directory part
    holds for every file in or below it, ``mask`` of those that hold for the files
    directly in it. ``below`` is the state of a subdirectory that adds nothing (itself,
    written :data:`_ITSELF`, unless this directory has rules for its own files only), so
    that such subdirectories share one object. ``active`` are the heads ``P/**/S`` with a
    literal ``P`` at or above the directory: its subdirectories look ``S`` up."""

    __slots__ = ("active", "below", "inherited", "mask")

    # No defaults and no logic: made for nearly every directory of a big change, and a
    # plain __init__ costs half as much. :func:`_plain_dir` makes one that adds nothing.
    def __init__(self, inherited: int, mask: int, below: _Dir, active: tuple[_Active, ...]) -> None:
        self.active = active  # heads "/a/**/b" whose "/a" is this directory or above
        self.inherited = inherited
        self.mask = mask
        self.below = below


def _plain_dir(inherited: int, active: tuple[_Active, ...] = ()) -> _Dir:
    """A state whose files and subdirectories get just ``inherited``."""
    return _Dir(inherited, inherited, _ITSELF, active)


_LATER: _Dir = _Dir.__new__(_Dir)  # stands for a ``below`` state not made yet
# Stands for the state itself as its own ``below``: a reference to itself would be a
# cycle, which only the garbage collector frees (see _collector_paused).
_ITSELF: _Dir = _Dir.__new__(_Dir)


class _NameMasks:
    """For an index whose directory rules are all met by names (see
    :meth:`_Index._dir_by_names`): what each name gives, as masks made once, when the
    index is built. ``below`` maps hold the masks of the entries that hold for every file
    below such a directory, ``here`` maps those for the files directly in it; only masks
    that are not 0 are kept:

    * ``top``: a directory at the root's level named ``b`` (the rules of ``b/``);
    * ``deep``: a directory below that level named ``b`` (``b/``, and ``*/b/``);
    * ``pair``: a directory ``b`` whose parent is ``a`` (``a/b/``);
    * ``parent``: a directory whose parent is ``a`` (``a/*/``).
    """

    __slots__ = (
        "deep_below",
        "deep_here",
        "pair_below",
        "pair_here",
        "parent_below",
        "parent_here",
        "top_below",
        "top_here",
    )

    def __init__(self, by_name: dict[str, _Named], by_parent: dict[str, _Rules]) -> None:
        self.top_below: dict[str, int] = {}
        self.top_here: dict[str, int] = {}
        self.deep_below: dict[str, int] = {}
        self.deep_here: dict[str, int] = {}
        self.pair_below: dict[tuple[str, str], int] = {}
        self.pair_here: dict[tuple[str, str], int] = {}
        self.parent_below: dict[str, int] = {}
        self.parent_here: dict[str, int] = {}
        top_below, top_here, deep_below, deep_here = (
            self.top_below,
            self.top_here,
            self.deep_below,
            self.deep_here,
        )
        for name, named in by_name.items():
            below = here = 0
            if (rules := named.rules) is not None:
                if not rules.ready:
                    rules.freeze()
                below, here = rules.below, rules.here
                if below:
                    top_below[name] = below
                if here:
                    top_here[name] = here
            if (rules := named.deep) is not None:
                if not rules.ready:
                    rules.freeze()
                below, here = below | rules.below, here | rules.here
            if below:
                deep_below[name] = below
            if here:
                deep_here[name] = here
            for parent, listed in (named.parents or {}).items():
                met = [rules for needle, rules in listed if needle is None]
                if met:
                    _put(self.pair_below, self.pair_here, (name, parent), met)
        for parent, rules in by_parent.items():
            _put(self.parent_below, self.parent_here, parent, [rules])


def _put(below: dict[_K, int], here: dict[_K, int], key: _K, met: list[_Rules]) -> None:
    """File under ``key`` the masks of the rules ``met`` together, those that are not 0."""
    below_mask, here_mask = _union(met)
    if below_mask:
        below[key] = below_mask
    if here_mask:
        here[key] = here_mask


def _union(met: Iterable[_Rules]) -> tuple[int, int]:
    """The masks of the rules ``met`` together: ``below``, ``here``."""
    below = here = 0
    for rules in met:
        if not rules.ready:
            rules.freeze()
        below |= rules.below
        here |= rules.here
    return below, here


# Where a pattern is filed (see _Index): its kind, key, and whether it holds for every
# file below its directory part; the last segment (None for "*": any name).
_EXACT, _ROOTED, _DIR, _NEEDLE, _HEAD, _NAME = range(6)
_Shape = tuple[int, str, bool, _Seg | None, list[_Part] | None]


class _Index:
    """Every entry filed by the shape of its pattern, so that a path only looks at the
    entries that can match it. A pattern is a directory part ``H`` and a last segment
    ``L``, either for the files in ``H`` (``H/L``) or for those at any depth below it
    (``H/**/L``). ``H`` is filed by what can be known of it without a regex:

    ==============================  ====================================================
    ``/a/b/c``                      exact: dict by path
    ``/a/b/L``, ``/a/b/**/L``       dict by directory ``/a/b``
    ``a/b/L``, ``a/b/**/L``         dict by directory name ``b`` (then the directory must
                                    end with ``/a/b``)
    ``*/b/L``; ``b/*/L``            dict by directory name ``b`` (then it has a parent);
                                    dict by the parent's name ``b``
    ``L``, ``**/L``                 just a test of the basename (below)
    ``/a/**/c/L``                   activated at ``/a`` (a state below it looks ``c`` up)
    ``/a/*/c/L`` (one depth)        dict by depth and all its literal names
    ``*/L``, ``*/*/**/L``           met by every directory at that depth, and inherited
    any other ``H``                 a :class:`_Head`, filed under the rarest literal name
                                    it gives at a fixed position from the start or the end
                                    of the directory (else its depth, else everywhere)
    ==============================  ====================================================

    A directory's state is built once, from its parent's: the entries whose ``H`` it meets
    give a match to the files in or below it when ``L`` is ``*``, else a basename check.
    Directories meeting the same rules below the same state share one state (while that
    pays: :meth:`_share_or_not`). When every directory rule is met by names alone (``b/``,
    ``a/b/``, ``b/*``: unanchored patterns), a directory's state is instead the OR of what
    its names give (each name, each name with its parent's, each parent's: masks made with
    the index, :class:`_NameMasks`);
    only the directories holding files get a state. A basename's
    state is built once too: the entries that are just ``L`` (dict by name, by ``*suffix``,
    else a test indexed by ``L``'s literal prefix or suffix) and the checks it passes,
    worked out per distinct ``L``. States are masks of entries (ints, one bit per entry):
    the entries matching a file are its directory's mask AND its basename's (whose mask
    holds every entry without an ``L`` too), OR its exact entries; each section's winner
    is the highest bit in the section's range. Files in one directory state whose
    basenames have equal masks share the answer.

    Regexes are compiled when first needed and used often (most of a big file's globs are
    tested a few times or never; until then a glob is tested in Python); ``prefix*suffix``
    segments are tested with ``startswith``/``endswith``. Per section the highest matching
    entry wins.
    """

    def __init__(self, sections: Sequence[Section]) -> None:
        self.exact: dict[str, int] = {}
        self.by_dir: dict[str, _Rules] = {}
        self.by_name: dict[str, _Named] = {}  # what a directory's name gives
        self.by_parent: dict[str, _Rules] = {}  # "**/a/*": met below a directory "a"
        self.heads: dict[str, _Head] = {}
        self.start: list[dict[str, list[_Head]]] = []  # i -> i-th name -> heads
        self.end: list[dict[str, list[_Head]]] = []  # j -> j-th name from the end -> heads
        self.by_depth: dict[int, list[_Head]] = {}
        # depth -> (the literal names' positions, the names there -> heads)
        self.fixed: dict[int, list[tuple[Callable[[list[str]], object], dict[object, list[_Head]]]]]
        self.fixed = {}
        self.anywhere: list[_Head] = []
        self.at_depth: dict[int, list[_Rules]] = {}  # depth -> rules met at that depth
        self.literal: dict[str, _Group] = {}  # L literal: dict by basename
        self.globs: dict[str, _Group] = {}  # the other L, by key
        self.ends_with: dict[str, _Group] = {}  # L = *suffix
        self.starts_with: dict[str, list[_Group]] = {}  # other L, by literal prefix
        self.tested_end: dict[str, list[_Group]] = {}  # other L, by literal suffix
        self.others: list[_Group] = []
        self.sections = len(sections)
        self.entries: list[Entry] = []
        self.section_of: list[int] = []  # gid -> section
        # section -> the mask of the entries before it
        self.before: list[int] = []
        for index, written in enumerate(sections):
            self.before.append((1 << len(self.entries)) - 1)
            self.entries.extend(entry for entry in written.entries if not entry.exclusion)
            self.entries.extend(entry for entry in written.entries if entry.exclusion)
            self.section_of.extend([index] * len(written.entries))
        self.excluded = len(self.entries)  # the offset of the exclusions' numbers (_Best)
        # Entries with the same owner text (or a section's default owners) share one set.
        self._owner_sets: dict[int, frozenset[Owner]] = {}
        # gid + 1 (a mask's bit_length when it is the highest) -> (the mask of the entries
        # before its section, its owners: none for an exclusion): what picking a section's
        # winner needs, made when it first wins
        self.winner_facts: list[tuple[int, frozenset[Owner]] | None]
        self.winner_facts = [None] * (len(self.entries) + 1)
        always: list[int] = []  # the entries that are just "L": their directory part holds
        any_name: list[int] = []  # the entries without "L": any basename passes
        exact: dict[str, int] = {}
        needles: dict[str, _Rules] = {}
        # (name, parent's name) of the directories that may meet a needle: _dir_by_names
        self._needle_pairs: set[tuple[str, str | None]] = set()
        rooted: dict[str, _Rules] = {}  # "/a\0/b" -> the rules of "/a/**/b"
        shapes: dict[str, _Shape | None] = {}
        segments: dict[str, _Seg] = {}
        by_dir = self.by_dir
        for gid, entry in enumerate(self.entries):
            pattern = entry.pattern
            if pattern in shapes:
                shape = shapes[pattern]
            else:
                shape = shapes[pattern] = _shape(pattern, segments)
            if shape is None:  # the pattern never matches (nor does the exclusion)
                continue
            kind, key, below, last, parts = shape
            if kind == _EXACT:
                exact[key] = exact.get(key, 0) | 1 << gid
                continue
            if kind == _NAME:
                assert last is not None
                (last.group or self._group(last)).gids.append(gid)
                always.append(gid)
                continue
            if kind == _DIR:
                rules = by_dir.get(key)
                if rules is None:
                    rules = by_dir[key] = _Rules()
            elif kind == _NEEDLE:
                rules = needles.get(key)
                if rules is None:
                    rules = needles[key] = _Rules()
                    names = key.split("/")  # "", ..., parent, name
                    named = self._named(names[-1])
                    if len(names) == 2:  # "/b": every directory named "b"
                        named.rules = rules
                    else:  # "/a/b", "/x/a/b": then its parent is "a"
                        if named.parents is None:
                            named.parents = {}
                        needle = key if len(names) > 3 else None
                        if needle is not None:
                            self._needle_pairs.add((names[-1], names[-2]))
                        named.parents.setdefault(names[-2], []).append((needle, rules))
            elif kind == _ROOTED:
                rules = rooted.get(key)
                if rules is None:
                    rules = rooted[key] = _Rules()
                    prefix, suffix = key.split("\0")
                    self._activate(prefix, suffix, rules)
            else:
                head = self.heads.get(key)
                if head is None:
                    assert parts is not None
                    head = self.heads[key] = _Head(parts)
                rules = head.rules
            (rules.below_gids if below else rules.here_gids).append(gid)
            if last is None:
                any_name.append(gid)
            else:
                (last.group or self._group(last)).gids.append(gid)
        self.exact = exact
        self.always, self.any_name = _mask(always), _mask(any_name)
        self._file_heads()
        self.ends_with_lengths = sorted({len(s) for s in self.ends_with})
        self.starts_with_lengths = sorted({len(s) for s in self.starts_with})
        self.tested_end_lengths = sorted({len(s) for s in self.tested_end})
        self._reset()

    def _group(self, last: _Seg) -> _Group:
        """The group of the entries whose last segment is ``last``, filed by its shape."""
        if last.text is not None:
            group = self.literal.get(last.text)
            if group is None:
                group = self.literal[last.text] = _Group(None)
        elif (group := self.globs.get(last.key)) is not None:
            pass
        elif last.simple and not last.prefix:  # "*.md", "*"
            group = self.ends_with.get(last.suffix)
            if group is None:
                group = self.ends_with[last.suffix] = _Group(None)
        elif last.simple and not last.suffix:  # "main.*": filed by the prefix it tests
            group = _Group(None)
            self.starts_with.setdefault(last.prefix, []).append(group)
        else:
            group = _Group(last.test())
            if last.prefix:
                self.starts_with.setdefault(last.prefix, []).append(group)
            elif last.suffix:
                self.tested_end.setdefault(last.suffix, []).append(group)
            else:
                self.others.append(group)
        if last.text is None:
            self.globs[last.key] = group
        last.group = group
        return group

    def _named(self, name: str) -> _Named:
        """What a directory named ``name`` gives, made when first needed."""
        named = self.by_name.get(name)
        if named is None:
            named = self.by_name[name] = _Named()
        return named

    def _activate(self, prefix: str, suffix: str, rules: _Rules) -> None:
        """File ``rules`` of the head ``prefix/**/suffix`` (both literal) under ``prefix``:
        a directory below it whose path ends with ``suffix`` meets them."""
        holder = self.by_dir.get(prefix)
        if holder is None:
            holder = self.by_dir[prefix] = _Rules()
        if holder.activate is None:
            holder.activate = {}
        last = suffix[suffix.rfind("/") + 1 :]
        holder.activate.setdefault(last, []).append((suffix, len(prefix) + len(suffix), rules))

    def _file_heads(self) -> None:
        """File each head: ``/a/**/b`` under ``/a``; one of a fixed depth under its depth
        and its rarest literal name there; others under their rarest literal name at a
        position from the start or the end (rarest: the fewest heads give that name)."""
        count: dict[str, int] = {}
        keyed = [(head, head.keys()) for head in self.heads.values()]
        for _, keys in keyed:
            for _, _, name in keys:
                count[name] = count.get(name, 0) + 1
        fixed: dict[int, dict[tuple[int, ...], dict[object, list[_Head]]]] = {}
        for head, keys in keyed:
            rooted = head.rooted()
            if rooted is not None:
                self._activate(*rooted, head.rules)
            elif head.fixed and head.regex is None and keys:
                # by every literal name it gives: "/a/*/c" under ("a", "c") at positions 0, 2
                positions = tuple(i for i, s in enumerate(head.prefix) if s.text is not None)
                texts = tuple(head.prefix[i].text or "" for i in positions)
                at = fixed.setdefault(len(head.prefix), {}).setdefault(positions, {})
                at.setdefault(texts if len(texts) > 1 else texts[0], []).append(head)
            elif keys:
                from_end, position, name = min(keys, key=lambda k: (count[k[2]], k[0], k[1]))
                index = self.end if from_end else self.start
                # "**/a/*/*", "**/*/*/a": filed under "a", a directory of its size matches
                others = [*head.prefix, *head.suffix]
                del others[len(others) - 1 - position if from_end else position]
                head.sure = head.regex is None and all(s.star for s in others)
                if head.sure and from_end and head.size == 2:
                    if position == 0:  # "**/*/a": a directory "a" that has a parent
                        named = self._named(name)
                        named.deep = _merged(named.deep, head.rules)
                    else:  # "**/a/*": a directory whose parent is "a"
                        self.by_parent[name] = _merged(self.by_parent.get(name), head.rules)
                    continue
                while len(index) <= position:
                    index.append({})
                index[position].setdefault(name, []).append(head)
            elif head.regex is None and all(s.star for s in (*head.prefix, *head.suffix)):
                depth = len(head.prefix) + len(head.suffix)  # "/*/*/L", "*/L": no test
                rules = head.rules
                if not head.fixed:
                    # "*/L" (a directory at depth 1 or more) is "L" below every directory
                    # at depth 1: met there, and inherited like any other rule.
                    rules = _Rules()
                    rules.below_gids = [*head.rules.below_gids, *head.rules.here_gids]
                self.at_depth.setdefault(depth, []).append(rules)
            elif head.fixed and head.regex is None:
                self.by_depth.setdefault(len(head.prefix), []).append(head)
            else:
                self.anywhere.append(head)
        self.fixed = {
            depth: [(itemgetter(*positions), index) for positions, index in at.items()]
            for depth, at in fixed.items()
        }
        self.start_items = [(i, index) for i, index in enumerate(self.start) if index]
        self.end_items = [(j, index) for j, index in enumerate(self.end) if index]
        # whether _tested has anything to look at (end_items, at_depth and fixed are _dir's)
        self.tested = bool(self.start_items or self.by_depth or self.anywhere)
        # every directory rule is met by a name, a parent's name or a depth (no head to
        # test, nothing filed by path, so nothing activated): see _dir_by_names
        self.by_name_only = not (self.by_dir or self.end_items or self.fixed or self.tested)
        self.name_masks = _NameMasks(self.by_name, self.by_parent) if self.by_name_only else None

    def _reset(self) -> None:
        root = _plain_dir(self.always)
        rules = self.by_dir.get("")
        if rules is not None:
            rules.freeze()
            inherited = self.always | rules.below
            if rules.here:
                root = _Dir(inherited, inherited | rules.here, _plain_dir(inherited), ())
            else:
                root = _plain_dir(inherited)
        self._dirs: dict[str, _Dir] = {"": root}
        # basename -> (its mask, the answers shared by the basenames with that mask:
        # directory state -> the owners of the files there and so named)
        self._bases: dict[str, tuple[int, _Answers]] = {}
        self._answers: dict[int, _Answers] = {}  # a basename's mask -> its answers
        self._answered = 0  # how many answers they hold
        # (the parent directory's state, the rules its subdirectory meets) -> the state;
        # used while it pays (see _dir)
        self._derived: dict[tuple[object, ...], _Dir] = {}
        self._sharing = True
        self._lookups = self._hits = 0
        self._depths: dict[int, tuple[int, int]] = {}  # depth -> masks (_dir_by_names)

    # ----------------------------------------------------------------- states

    def _dir(self, directory: str) -> _Dir:
        """The state of ``directory`` (``"/a/b"``), built from its nearest known ancestor's
        downwards: each directory's from its parent's, the names split once."""
        if self.by_name_only and (found := self._dir_by_names(directory)) is not None:
            return found
        dirs = self._dirs
        # the nearest known ancestor's state, the directories from this one up to it
        # (deepest first), this one's names, and how many of them the ancestor has
        missing = [directory]
        up = directory[: directory.rfind("/")]
        state = dirs.get(up)
        while state is None:
            missing.append(up)
            up = up[: up.rfind("/")]
            state = dirs.get(up)
        names = directory[1:].split("/")
        count = len(names) - len(missing)
        by_dir, by_name, by_parent, derived = (
            self.by_dir,
            self.by_name,
            self.by_parent,
            self._derived,
        )
        end_items, at_depth, fixed, tested = self.end_items, self.at_depth, self.fixed, self.tested
        sharing = self._sharing
        lookups = hits = 0
        for directory in reversed(missing):
            name = names[count]
            count += 1
            fired: list[_Rules] = []
            rules = by_dir.get(directory)
            if rules is not None:
                fired.append(rules)
            parent = names[count - 2] if count > 1 else None
            named = by_name.get(name)
            if named is not None:
                if named.rules is not None:
                    fired.append(named.rules)
                if parent is not None and (named.deep is not None or named.parents is not None):
                    named.meet_below(directory, parent, fired)
            if by_parent and parent is not None:
                rules = by_parent.get(parent)
                if rules is not None:
                    fired.append(rules)
            for active in state.active:
                for suffix, shortest, rules in active.get(name, ()):
                    if len(directory) >= shortest and directory.endswith(suffix):
                        fired.append(rules)
            for position, index in end_items:
                if position >= count:
                    break
                heads = index.get(names[count - 1 - position])
                if heads:
                    mine = names[:count]
                    fired.extend([h.rules for h in heads if _passes(h, directory, mine)])
            if at_depth:
                fired.extend(at_depth.get(count, ()))
            if fixed:  # names_at reads positions below count: this directory's names
                for names_at, by_names in fixed.get(count, ()):
                    heads = by_names.get(names_at(names))
                    if heads:
                        mine = names[:count]
                        fired.extend(
                            [h.rules for h in heads if h.sure or h.matches(directory, mine)]
                        )
            if tested:
                self._tested(directory, names[:count], fired)
            if not fired:
                dirs[directory] = state = self._below(state)
                continue
            if not sharing:
                dirs[directory] = state = self._derive(state, fired)
                continue
            # Directories that meet the same rules below the same state share their state
            # (and so their files' answers): keyed by the state of the subdirectories that
            # add nothing (shared by states that add rules for their own files only), or
            # while that is not made yet (a state that adds rules below it: a state of its
            # own) by the parent's state.
            below = state.below
            key = (state if below is _LATER or below is _ITSELF else below, *fired)
            found = derived.get(key)
            if found is None:
                found = derived[key] = self._derive(state, fired)
            else:
                hits += 1
            lookups += 1
            dirs[directory] = state = found
        if lookups:
            self._share_or_not(lookups, hits)
        return state

    def _share_or_not(self, lookups: int, hits: int) -> None:
        """Count the lookups of derived states and their hits; stop sharing them once
        :data:`_SHARING_TRIAL` lookups found fewer than one hit in :data:`_SHARING_HITS`.
        Where most directories of a change meet rules of their own (a third of the
        patterns unanchored: one hit in nine), each miss costs a key and an entry and
        the match is about 5% quicker without; where many meet the same ones (the
        extension globs: four hits in five), sharing spares most answers. Until the
        caches are started afresh."""
        self._lookups += lookups
        self._hits += hits
        if self._lookups >= _SHARING_TRIAL and self._hits * _SHARING_HITS < self._lookups:
            self._sharing = False
            self._derived = {}

    def _dir_by_names(self, directory: str) -> _Dir | None:
        """:meth:`_dir` for a file whose directory rules are all met by a directory's name,
        its parent's name or its depth (``b/``, ``a/b/``, ``b/*``, ``*/``: the files of
        unanchored patterns), without walking down from a known ancestor: the state of
        ``/a/b/c`` is the OR of what ``a`` gives at the top, ``b`` and ``c`` below it,
        ``b`` under ``a`` and ``c`` under ``b``, and ``a`` and ``b`` as parents
        (:class:`_NameMasks`), looked up in C (``map``, ``reduce``), not one Python step
        and one state per directory. None if a name and its parent's need the whole path
        (``x/a/b/``): :meth:`_dir` walks it."""
        names = directory[1:].split("/")
        needles = self._needle_pairs
        if needles and not needles.isdisjoint(zip(names, [None, *names], strict=False)):
            return None
        masks = self.name_masks
        assert masks is not None
        depth = self._depths.get(len(names))
        if depth is None:
            depth = self._depth(len(names))
        name = names[0]
        inherited = masks.top_below.get(name, 0) | depth[0]
        if len(names) == 1:
            here = masks.top_here.get(name, 0) | depth[1]
        else:
            inner, outer = names[1:], names[:-1]  # each directory below the top, its parent
            inherited = reduce(
                or_,
                filter(
                    None,
                    chain(
                        map(masks.deep_below.get, inner),
                        map(masks.pair_below.get, zip(inner, outer, strict=True)),
                        map(masks.parent_below.get, outer),
                    ),
                ),
                inherited,
            )
            name, parent = names[-1], names[-2]
            here = (
                masks.deep_here.get(name, 0)
                | masks.pair_here.get((name, parent), 0)
                | masks.parent_here.get(parent, 0)
                | depth[1]
            )
        mask = inherited | here if here else inherited
        state = self._dirs[directory] = _Dir(inherited, mask, _LATER, ())
        return state

    def _depth(self, count: int) -> tuple[int, int]:
        """What a directory at depth ``count`` gets from the rules met at a depth (and
        from :attr:`always`): for every file below it (the rules met at its depth or
        above), and for the files directly in it."""
        below = self.always
        for depth, met in self.at_depth.items():
            if depth <= count:
                below |= _union(met)[0]
        masks = self._depths[count] = (below, _union(self.at_depth.get(count, ()))[1])
        return masks

    def _tested(self, directory: str, names: list[str], fired: list[_Rules]) -> None:
        """Add to ``fired`` the rules of the heads found by a name from the start of
        ``directory`` (split into ``names``), by its depth, or by a regex, that it
        matches (those found by their fixed depth and names are :meth:`_dir`'s)."""
        count = len(names)
        for position, index in self.start_items:
            if position >= count:
                break
            heads = index.get(names[position])
            if heads:
                fired.extend([h.rules for h in heads if _passes(h, directory, names)])
        heads = self.by_depth.get(count)
        if heads:
            fired.extend([h.rules for h in heads if h.matches(directory, names)])
        if self.anywhere:
            fired.extend([h.rules for h in self.anywhere if h.matches(directory, names)])

    @staticmethod
    def _derive(parent: _Dir, fired: list[_Rules]) -> _Dir:
        """The state of a directory that meets the rules ``fired``, in a directory whose
        state is ``parent``."""
        inherited, active = parent.inherited, parent.active
        here = 0
        changed = False
        for rules in fired:
            if not rules.ready:
                rules.freeze()
            if rules.activate:
                active = (*active, rules.activate)
                changed = True
            if rules.below:
                inherited |= rules.below
                changed = True
            if rules.here:  # 0 | here would copy the mask
                here = here | rules.here if here else rules.here
        if changed:  # its subdirectories' state is made when first needed
            if not here:
                return _plain_dir(inherited, active)
            return _Dir(inherited, inherited | here, _LATER, active)
        below = _Index._below(parent)  # it adds nothing to its subdirectories
        return _Dir(inherited, inherited | here, below, active) if here else below

    @staticmethod
    def _below(state: _Dir) -> _Dir:
        """The state of a subdirectory of ``state``'s that adds nothing, made when first
        needed."""
        below = state.below
        if below is _ITSELF:
            return state
        if below is _LATER:
            below = state.below = _plain_dir(state.inherited, state.active)
        return below

    def _base(self, name: str) -> tuple[int, _Answers]:
        """The state of a basename: the mask of the entries whose last segment it passes,
        and of those without one; and the answers that basenames with an equal mask share
        (keyed by directory state: no key object is made per file)."""
        found: list[_Group] = []
        group = self.literal.get(name)
        if group is not None:
            found.append(group)
        size = len(name)
        ends_with = self.ends_with
        for length in self.ends_with_lengths:
            if length > size:
                break
            group = ends_with.get(name[size - length :])
            if group is not None:
                found.append(group)
        for length in self.starts_with_lengths:
            if length > size:
                break
            for group in self.starts_with.get(name[:length], ()):
                if group.test is None or group.test(name):
                    found.append(group)
        for length in self.tested_end_lengths:
            if length > size:
                break
            for group in self.tested_end.get(name[size - length :], ()):
                if group.test is None or group.test(name):
                    found.append(group)
        for group in self.others:
            if group.test is None or group.test(name):
                found.append(group)
        mask = self.any_name
        for group in found:
            if not group.ready:
                group.freeze()
            mask |= group.mask
        answers = self._answers.get(mask)
        if answers is None:
            answers = self._answers[mask] = {}
        base = self._bases[name] = (mask, answers)
        return base

    # ----------------------------------------------------------------- matching

    def _trim(self) -> None:
        """Start afresh once the caches hold too much (a long-lived bot process): more
        than :data:`_CACHE_LIMIT` items, or masks of more than :data:`_CACHE_BYTES`
        (states and basenames hold masks of up to one bit per entry)."""
        dirs, bases, depths = len(self._dirs), len(self._bases), len(self._depths)
        sizes = dirs + bases + self._answered + len(self._derived) + depths
        masks = 2 * dirs + bases + 2 * depths  # a state holds two masks (at most: shared)
        if sizes > _CACHE_LIMIT or masks * (len(self.entries) >> 3) > _CACHE_BYTES:
            self._reset()

    def best(self, path: str) -> _Best:
        """Section index -> number of its winning entry, for a normalised path (an
        exclusion's number is offset by :attr:`excluded`)."""
        self._trim()
        cut = path.rfind("/")
        state = self._dirs.get(path[:cut]) or self._dir(path[:cut])
        name = path[cut + 1 :]
        base = self._bases.get(name) or self._base(name)
        matched = state.mask & base[0] | self.exact.get(path, 0)
        best: _Best = {}
        while matched:
            top = matched.bit_length() - 1
            section = self.section_of[top]
            best[section] = top + self.excluded if self.entries[top].exclusion else top
            matched &= self.before[section]
        return best

    def _winner_facts(self, matched: int) -> tuple[int, frozenset[Owner]]:
        """The facts of the highest entry in ``matched`` (see :attr:`winner_facts`)."""
        gid = matched.bit_length() - 1
        owners = self.entries[gid].owners
        owner_set = self._owner_sets.get(id(owners))
        if owner_set is None:
            owner_set = self._owner_sets[id(owners)] = frozenset(owners)
        facts = self.winner_facts[gid + 1] = (self.before[self.section_of[gid]], owner_set)
        return facts

    def owners_of_paths(self, paths: Iterable[str]) -> dict[str, frozenset[Owner]]:
        """Path as given -> its owners; files in one directory whose basenames pass the
        same entries share one answer."""
        paths = list(paths)  # read first: an iterable that matched too could reset the caches
        self._trim()
        if len(paths) < _PAUSE_FROM:
            return self._owners_of(paths)
        with _collector_paused():
            return self._owners_of(paths)

    def _owners_of(self, paths: list[str]) -> dict[str, frozenset[Owner]]:
        result: dict[str, frozenset[Owner]] = {}
        dirs, bases, exact, facts = self._dirs, self._bases, self.exact, self.winner_facts
        answered = 0
        for original in paths:
            path = original if original[:1] == "/" else "/" + original
            directory, _, name = path.rpartition("/")
            state = dirs.get(directory) or self._dir(directory)
            base = bases.get(name) or self._base(name)
            if exact and path in exact:  # (an empty dict still hashes the path)
                answers = None
                matched = state.mask & base[0] | exact[path]
            else:
                answers = base[1]
                owners = answers.get(state)
                if owners is not None:
                    result[original] = owners
                    continue
                matched = state.mask & base[0]
            # The owners of the entries in ``matched``: each section's highest entry's
            # (none when that is an exclusion). Written out here, not called: this runs
            # for nearly every file of a big change. Winners without owners are left out
            # of the union, and one section's owners are the answer as they are (no new
            # set: fewer objects for the young collection, see _collector_paused).
            found: list[frozenset[Owner]] = []
            while matched:
                before, owners = facts[matched.bit_length()] or self._winner_facts(matched)
                if owners:
                    found.append(owners)  # (a bound append is slower: 3.11 specialises it)
                matched &= before
            owners = found[0] if len(found) == 1 else _EMPTY.union(*found)
            if answers is not None:
                answers[state] = owners
                answered += 1
            result[original] = owners
        self._answered += answered
        return result


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector during a bulk match, as Mercurial's
    ``util.nogc`` does while it builds big containers. A match of a big change makes
    thousands of states and answers that live as long as the index: every 700 of them would
    start a collection of the youngest generation that frees nothing (3 ms of a 27 ms
    match of 3,000 paths). One such collection at the end does that work once. The
    collector is started again even when the match raises, and left alone when it was
    already paused (by the program, or by another thread's match, which restarts it).

    The objects ``serve`` froze once started (``gc.freeze()``) stay frozen: moving the
    kept states to the oldest generation with ``gc.freeze()`` and ``gc.unfreeze()``
    would save that young collection (a tenth of a cold match) but unfreeze them, and
    ``gc.get_freeze_count()`` walks every frozen object (10 ms in a warm pick)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
            gc.collect(0)


def _shape(pattern: str, segments: dict[str, _Seg]) -> _Shape | None:
    """Where ``pattern`` is filed in the index; None if it never matches."""
    if "[" not in pattern and "\\" not in pattern:
        shape = _plain_shape(pattern, segments)
        if shape is not None:
            return shape
    parts: list[_Part] = []
    if "[" in pattern or "\\" in pattern:
        items = _pattern_items(pattern)
        if items is None:
            return None
        for item in items:
            parts.append(item if isinstance(item, str) else _Seg.parsed(item))
    else:
        if not pattern.startswith("/"):
            pattern = "/**/" + pattern
        if pattern.endswith("/"):
            pattern += "**/*"
        written = pattern[1:].split("/")
        final = len(written) - 1
        for number, raw in enumerate(written):
            if raw == "**" and number < final:
                if not parts or parts[-1] != _GLOBSTAR:
                    parts.append(_GLOBSTAR)
                continue
            seg = segments.get(raw)
            if seg is None:
                seg = segments[raw] = _Seg.written(raw)
            parts.append(seg)
    tail = parts[-1]
    assert isinstance(tail, _Seg)
    head = parts[:-1]
    below = bool(head) and head[-1] == _GLOBSTAR
    if below:
        head.pop()
    names = [part.text if isinstance(part, _Seg) else None for part in head]
    literal = None not in names
    last = None if tail.star else tail
    if not head:
        if below:  # "**/L": any file named so
            return (_NAME, "", False, tail, None)
        if tail.text is not None:
            return (_EXACT, "/" + tail.text, False, None, None)
        return (_DIR, "", False, last, None)  # "/L": the root's files
    if literal:
        directory = "".join(f"/{name}" for name in names)
        if not below and tail.text is not None:
            return (_EXACT, f"{directory}/{tail.text}", False, None, None)
        return (_DIR, directory, below, last, None)
    if head[0] == _GLOBSTAR and None not in names[1:]:
        needle = "".join(f"/{name}" for name in names[1:])
        if not needle:  # "**/L" again
            return (_NAME, "", False, tail, None)
        return (_NEEDLE, needle, below, last, None)
    key = "\1".join(part.key if isinstance(part, _Seg) else "\2" for part in head)
    return (_HEAD, key, below, last, head)


# --------------------------------------------------------------------------- CodeOwners


class CodeOwners:
    """A parsed CODEOWNERS file; build it with :func:`parse`."""

    def __init__(self, sections: Iterable[Section], warnings: Iterable[str] = ()) -> None:
        self.sections: tuple[Section, ...] = tuple(sections)
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._index = _Index(self.sections)
        self._regexes: tuple[tuple[re.Pattern[str], ...], ...] | None = None

    def __repr__(self) -> str:
        entries = sum(len(s.entries) for s in self.sections)
        return f"<CodeOwners: {len(self.sections)} sections, {entries} entries>"

    def owners_of(self, path: str) -> frozenset[Owner]:
        """The owners of one path: the union over sections."""
        return self._index.owners_of_paths((path,))[path]

    def matches_of(self, path: str) -> list[Match]:
        """The winning entry of each section for ``path``, in section order (a section
        whose exclusion matches ``path`` has none)."""
        best = self._index.best(_normalize_path(path))
        matches: list[Match] = []
        for number in sorted(best):
            if best[number] < self._index.excluded:
                entry = self._index.entries[best[number]]
                name = self.sections[number].name
                matches.append(Match(name, entry.pattern, entry.line, entry.owners))
        return matches

    def owners_of_paths(self, paths: Iterable[str]) -> dict[str, frozenset[Owner]]:
        """The owners of every path: the fast path for many files."""
        return self._index.owners_of_paths(paths)

    def all_owners(self, paths: Iterable[str]) -> frozenset[Owner]:
        """The union of the owners of all ``paths``."""
        return frozenset().union(*self.owners_of_paths(paths).values())

    def _reference_regexes(self) -> tuple[tuple[re.Pattern[str], ...], ...]:
        """One compiled regex per entry, for :func:`reference_owners` (compiled once)."""
        if self._regexes is None:
            self._regexes = tuple(
                tuple(_pattern_regex(entry.pattern) for entry in section.entries)
                for section in self.sections
            )
        return self._regexes


def _plain_shape(pattern: str, segments: dict[str, _Seg]) -> _Shape | None:
    """The shape of a pattern whose only glob is in its last segment, if it is one of
    those: worked out with string operations (most lines of a big file). None otherwise
    (:func:`_shape` does the rest)."""
    if not pattern:
        return None
    anchored = pattern[0] == "/"
    if pattern[-1] == "/":  # "/a/b/", "a/b/": every file below
        directory = pattern[:-1]
        if not directory:
            return None
        if "*" in directory or "?" in directory:
            return _deep_shape(pattern, segments)
        return (
            (_DIR, directory, True, None, None)
            if anchored
            else (
                _NEEDLE,
                "/" + directory,
                True,
                None,
                None,
            )
        )
    cut = pattern.rfind("/")
    directory, name = pattern[:cut] if cut >= 0 else "", pattern[cut + 1 :]
    if "*" in directory or "?" in directory:
        return _deep_shape(pattern, segments)
    if "*" not in name and "?" not in name:
        if anchored:
            return (_EXACT, pattern, False, None, None)
        last = segments.get(name)
        if last is None:
            last = segments[name] = _Seg.written(name)
        if cut < 0:
            return (_NAME, "", False, last, None)
        return (_NEEDLE, "/" + directory, False, last, None)
    last = segments.get(name)
    if last is None:
        last = segments[name] = _Seg.written(name)
    if anchored:
        return (_DIR, directory, False, None if last.star else last, None)
    if cut < 0:
        return (_NAME, "", False, last, None)
    return (_NEEDLE, "/" + directory, False, None if last.star else last, None)


def _deep_shape(pattern: str, segments: dict[str, _Seg]) -> _Shape | None:
    """The shape of ``A/**/L`` (``A`` literal: ``L`` below ``A``) and of ``/A/**/B/L`` or
    ``/A/**/B/`` (``A`` and ``B`` literal: activated at ``/A``), by string operations; None
    for other patterns."""
    below = pattern[-1] == "/"
    if below:
        directory, name = pattern[:-1], ""
    else:
        cut = pattern.rfind("/")
        directory, name = pattern[:cut], pattern[cut + 1 :]
    if directory.count("*") != 2 or "?" in directory:
        return None
    star = directory.find("**")
    before, after = directory[:star], directory[star + 2 :]
    if (before and before[-1] != "/") or (after and after[0] != "/"):
        return None  # "a**/", "**b": not a whole segment
    last = None
    if name:
        last = segments.get(name)
        if last is None:
            last = segments[name] = _Seg.written(name)
    anchored = pattern[0] == "/"
    if not after:  # ".../**/L"
        if last is None:
            return None
        head = before[:-1]
        if not head:  # "**/L", "/**/L": any file named so
            return (_NAME, "", False, last, None)
        check = None if last.star else last
        if anchored:
            return (_DIR, head, True, check, None)
        return (_NEEDLE, "/" + head, True, check, None)
    if not anchored or len(before) < 2:  # "/a/**/b/...": a literal name on each side
        return None
    check = None if last is None or last.star else last
    return (_ROOTED, before[:-1] + "\0" + after, below, check, None)
