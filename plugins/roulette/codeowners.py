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

The fast matcher (:meth:`CodeOwners.owners_of_paths`) indexes every entry by its shape once,
in :func:`parse`; :func:`reference_owners` is the plain one-regex-per-entry scan that the
property test and the benchmark compare it against (its regexes are compiled on first use,
once per parsed file).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Literal

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


@dataclass(frozen=True, order=True)
class Owner:
    """One owner: ``name`` (``@name``: a user, else a group), ``group`` (``@a/b``),
    ``email`` (lower-cased) or ``role`` (``developer``, ``maintainer`` or ``owner``)."""

    kind: OwnerKind
    value: str

    def __str__(self) -> str:
        if self.kind == "email":
            return self.value
        return ("@@" if self.kind == "role" else "@") + self.value


@dataclass(frozen=True)
class Entry:
    """A pattern line. ``pattern`` is as written (without the ``!`` of an exclusion);
    ``owners`` are the effective owners (the section's default owners when the line names
    none); an exclusion has no owners."""

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
_ESCAPED_WS_RE = re.compile(r"\\[ \t\n\v\f\r]+")
_TOKEN_RE = re.compile(r"[^ \t\n\v\f\r]+")
_HEADER_RE = re.compile(r"(\^)?\[([^\]]*)\](?:\[([^\]]*)\])?(.*)", re.DOTALL)
# GitLab's ReferenceExtractor: a role is a whole word; names and emails are searched for.
_ROLE_RE = re.compile(r"@@(developer|maintainer|owner)s?", re.IGNORECASE)
# A namespace path (Gitlab::PathRegex): components joined by "/", after an "@" that does
# not follow a word character or another "@".
_COMPONENT = r"(?:[A-Za-z0-9_.][A-Za-z0-9_.\-]*[A-Za-z0-9_\-]|[A-Za-z0-9_])"
_NAME_RE = re.compile(rf"(?<![A-Za-z0-9_@])@({_COMPONENT}(?:/{_COMPONENT})*)")
# EMAIL_REGEXP: ends with a word character.
_EMAIL_RE = re.compile(r"[^@ \t\n\v\f\r]{1,100}@[^@ \t\n\v\f\r]{1,255}(?<=[A-Za-z0-9_])")


def _token_owners(token: str) -> list[Owner]:
    """The owners GitLab finds in one whitespace-separated token (``@a,`` holds ``@a``)."""
    found: list[Owner] = []
    if role := _ROLE_RE.fullmatch(token):
        found.append(Owner("role", role.group(1).lower()))
    for name in _NAME_RE.finditer(token):
        found.append(Owner("group" if "/" in name.group(1) else "name", name.group(1)))
    found.extend(Owner("email", email.lower()) for email in _EMAIL_RE.findall(token))
    return found


def _parse_owners(text: str, line: int, warnings: list[str]) -> tuple[list[str], tuple[Owner, ...]]:
    """The owner tokens of ``text`` and the owners found in them, de-duplicated; a token
    holding no owner at all is malformed (GitLab's ``malformed_entry_owner``)."""
    tokens = _TOKEN_RE.findall(text)
    owners: dict[Owner, None] = {}
    for token in tokens:
        found = _token_owners(token)
        if not found:
            warnings.append(f"line {line}: ignored malformed owner {token!r}")
        owners.update(dict.fromkeys(found))
    return tokens, tuple(owners)


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
    line: str, number: int, warnings: list[str]
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
        if re.fullmatch(r"[0-9]+", count):
            approvals = max(int(count), 1)  # GitLab: 0 requires one approval
        else:
            warnings.append(f"line {number}: invalid approval count {count!r}, using 1")
    optional = caret is not None
    if optional and count is not None:
        warnings.append(f"line {number}: an optional section takes no approval count")
    defaults: tuple[Owner, ...] = ()
    if rest and rest[0] in _WS:
        _, defaults = _parse_owners(rest, number, warnings)
    elif rest:
        # GitLab's header regex is not anchored at the end and silently drops this text.
        warnings.append(f"line {number}: ignored text after section header: {rest!r}")
    return name, optional, approvals, defaults


def parse(text: str) -> CodeOwners:
    """Parse a CODEOWNERS file and compile its matchers."""
    warnings: list[str] = []
    default = _SectionBuilder(DEFAULT_SECTION, False, 1, ())
    sections: list[_SectionBuilder] = [default]
    by_key: dict[str, _SectionBuilder] = {}
    current, defaults = default, default.default_owners
    text = text.removeprefix("\ufeff")
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(_WS)
        if not line or line.startswith("#"):
            continue
        header = _parse_header(line, number, warnings) if line[0] in "[^" else None
        if header is not None:
            name, optional, approvals, defaults = header
            key = name.casefold()
            found = by_key.get(key)
            if found is None:
                found = by_key[key] = _SectionBuilder(name, optional, approvals, defaults)
                sections.append(found)
            else:
                found.optional = found.optional and optional
                found.approvals = max(found.approvals, approvals)
            current = found
            continue
        parts = _SPLIT_RE.split(line, maxsplit=1)
        pattern, owner_text = parts[0], parts[1] if len(parts) > 1 else ""
        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:]
            for token in _TOKEN_RE.findall(owner_text):
                warnings.append(f"line {number}: ignored owner {token!r} on an exclusion")
            owners: tuple[Owner, ...] = ()
        else:
            tokens, owners = _parse_owners(owner_text, number, warnings)
            if not tokens:
                owners = defaults
        current.entries.append(Entry(pattern, owners, exclusion, number))
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
    (GitLab keeps one entry per distinct pattern). It is quicker than GitLab's loop, not
    slower: the exclusions are tried first, and the entries stop at the first match
    (GitLab tests every entry of a section, to find its exclusions).
    """

    def __init__(self, codeowners: CodeOwners) -> None:
        self._sections: list[tuple[list[_Test], list[tuple[_Test, tuple[Owner, ...]]]]] = []
        for section in codeowners.sections:
            exclusions: list[_Test] = []
            entries: list[tuple[_Test, tuple[Owner, ...]]] = []
            for entry in reversed(section.entries):
                test = re.compile(_fnmatch_regex(_gitlab_pattern(entry.pattern))).fullmatch
                if entry.exclusion:
                    exclusions.append(test)
                else:
                    entries.append((test, entry.owners))
            self._sections.append((exclusions, entries))

    def owners_of(self, path: str) -> frozenset[Owner]:
        """The owners of ``path`` (relative to the repository, with or without a leading
        ``/``): the union over sections of the winning entry's owners."""
        target = path if path.startswith("/") else "/" + path
        owners: set[Owner] = set()
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
# within a section a later entry has a higher number. An exclusion's number is offset by
# _EXCLUDED so that it beats every entry of its section. A "best" map holds, per section
# index, the highest number among the entries found to match.
_EXCLUDED = 1 << 40
_Best = dict[int, int]
_Vector = tuple[int, ...]  # a best map as a tuple: section index -> number, -1 if none
_Pair = tuple[int, int]  # (section, gid)
_Test = Callable[[str], object]  # a compiled regex's fullmatch
_Needle = tuple[str | None, int, int]  # (text the path must end with, section, gid)
_EMPTY: frozenset[Owner] = frozenset()
_NONE: frozenset[int] = frozenset()
_CACHE_LIMIT = 200_000


def _literal(item: _Item) -> str | None:
    """The text of a segment made of one literal (``""`` for an empty segment)."""
    if isinstance(item, str):
        return None
    if not item:
        return ""
    if len(item) == 1 and isinstance(item[0], _Lit):
        return item[0].text
    return None


def _star_suffix(item: _Item) -> str | None:
    """``".md"`` for the segment ``*.md``; ``""`` for ``*``; else None."""
    if isinstance(item, str) or not item or not isinstance(item[0], _Star):
        return None
    if len(item) == 1:
        return ""
    if len(item) == 2 and isinstance(item[1], _Lit):
        return item[1].text
    return None


def _merge(best: _Best, section: int, gid: int) -> None:
    if best.get(section, -1) < gid:
        best[section] = gid


class _Trigger:
    """The globs sharing one directory part ``H``, and what a directory matching it adds:
    a match for every file below (``H/**/*``), a basename check for every file below
    (``H/**/L``) or for the files directly in it (``H/L``)."""

    __slots__ = ("below", "checks_below", "checks_here", "test")

    def __init__(self, test: _Test) -> None:
        self.test = test
        self.below: list[_Pair] = []
        self.checks_below: list[int] = []
        self.checks_here: list[int] = []


class _Dir:
    """A directory's state: ``inherited``/``inherited_checks`` hold for every file in or
    below it, ``best``/``checks`` for the files directly in it. ``checks`` are the globs
    whose directory part matched and that still need a basename check. ``below`` is the
    state of a subdirectory that adds nothing (itself, unless this directory has rules for
    its own files only), so that such subdirectories share one object."""

    __slots__ = ("below", "best", "checks", "inherited", "inherited_checks", "sid", "vector")

    def __init__(self, inherited: _Best, inherited_checks: frozenset[int]) -> None:
        self.inherited = inherited
        self.inherited_checks = inherited_checks
        self.best = inherited
        self.checks = inherited_checks
        self.below = self
        self.sid = -1  # set, with vector, once a file is looked up in this directory
        self.vector: _Vector = ()


class _Base:
    """A basename's state: the entries it matches wherever it is (``vector``), the tails
    left to check, and the globs whose basename check it passes (``hits``)."""

    __slots__ = ("hits", "sid", "tails", "vector")

    def __init__(
        self, vector: _Vector, sid: int, tails: tuple[_Needle, ...], hits: frozenset[int]
    ) -> None:
        self.vector = vector
        self.sid = sid
        self.tails = tails
        self.hits = hits


class _Index:
    """Every entry filed by the shape of its pattern, so that a path only looks at the
    entries that can match it (``D`` = the path's directory, ``B`` = its basename):

    ======================  ==========================================================
    ``/a/b/c``              exact: dict by path
    ``/a/b/*``              one level: dict by ``D``
    ``/a/b/``               anchored directory: dict by each directory prefix of ``D``
    ``b/``, ``a/b/``        directory at any depth: dict by directory name (then ``D``
                            must end with ``/a/b`` there)
    ``c.md``, ``b/c.md``    tail: dict by ``B`` (then the path must end with ``/b/c.md``)
    ``*.md``, ``*``         dict by suffix of ``B`` (only the suffix lengths in use)
    real globs              split into a directory part and a basename part (below)
    ======================  ==========================================================

    A real glob is ``H/**/*``, ``H/**/L`` or ``H/L`` (``L`` its last segment). ``H`` is
    tested once per directory, when the directory is first seen, and only at directories
    that can match it: for ``H`` of a fixed depth, the one directory ``H`` if it is all
    literal, else those with ``H``'s literal parent, or ``H``'s last name, or ``H``'s
    literal grandparent, or the rarest name ``H`` has at that position; for ``H`` with a
    ``**``, those named like ``H``'s last segment; failing all that, every directory. A
    directory matching ``H`` gives a match to every file below it (``H/**/*``), or a
    basename check ``L`` to every file below (``H/**/L``) or in it (``H/L``). Which checks
    a basename passes is worked out once per basename (indexed by the literal prefix or
    suffix of ``L``); a path then intersects its directory's checks with its basename's,
    in C. A glob with no directory part, ``**/L``, is just a test of the basename.

    Directory states are built from the parent's state and cached; basename states too.
    Per section the highest matching entry wins: each state keeps its best entry per
    section as a tuple, and a path's winners are ``map(max, directory's, basename's)``.
    When nothing path-specific is involved, the owners depend only on the pair of states,
    which is cached as well.
    """

    def __init__(self, sections: Sequence[Section]) -> None:
        self.exact: dict[str, list[_Pair]] = {}
        self.by_dir: dict[str, tuple[list[_Pair], list[_Pair]]] = {}  # anchored, one level
        self.by_name: dict[str, tuple[list[_Pair], dict[str, _Trigger]]] = {}
        self.dir_tail: dict[str, list[_Needle]] = {}
        self.tail: dict[str, list[_Needle]] = {}
        self.suffix: dict[str, list[_Pair]] = {}
        self.base_globs: list[tuple[_Test, int, int]] = []  # "**/L"
        self.by_depth: dict[tuple[int, int, str], dict[str, _Trigger]] = {}
        self.depths: dict[int, set[int]] = {}  # depth -> positions used in by_depth
        self.by_parent: dict[str, dict[str, _Trigger]] = {}  # by "/a/b" or, exactly, "/a/b/"
        self.by_grandparent: dict[str, dict[str, _Trigger]] = {}
        self.anywhere: dict[str, _Trigger] = {}
        self.root_checks: list[int] = []  # "/L": files at the root
        # The basename checks: regex -> (test, gids), indexed by the literal ends of "L".
        self.checks: dict[str, tuple[_Test, list[int]]] = {}
        self.check_prefix: dict[str, list[tuple[_Test, list[int]]]] = {}
        self.check_suffix: dict[str, list[tuple[_Test, list[int]]]] = {}
        self.check_other: list[tuple[_Test, list[int]]] = []
        self.sections = len(sections)
        self.section_of: list[int] = []  # gid (without the exclusion offset) -> section
        self.owner_sets: list[frozenset[Owner]] = []
        self.entries: list[Entry] = []
        parsed: list[tuple[list[_Item], int, int]] = []
        for number, section in enumerate(sections):
            for entry in section.entries:
                gid = len(self.entries) + (_EXCLUDED if entry.exclusion else 0)
                self.entries.append(entry)
                self.section_of.append(number)
                self.owner_sets.append(frozenset(entry.owners))
                items = _pattern_items(entry.pattern)
                if items is not None:  # else the pattern never matches
                    parsed.append((items, number, gid))
        # How many patterns name each directory: a glob is filed under its rarest name.
        self.frequency: dict[str, int] = {}
        for items, _, _ in parsed:
            for text in {_literal(item) for item in items[:-1]}:
                if text is not None:
                    self.frequency[text] = self.frequency.get(text, 0) + 1
        for items, number, gid in parsed:
            self._add(items, number, gid)
        self.suffix_lengths = sorted({len(s) for s in self.suffix})
        self.prefix_lengths = sorted({len(s) for s in self.check_prefix})
        self.check_suffix_lengths = sorted({len(s) for s in self.check_suffix})
        self._reset()

    def _reset(self) -> None:
        root = _Dir({}, _NONE)
        level = self.by_dir.get("", ((), ()))[1]
        if level or self.root_checks:
            root.below = _Dir({}, _NONE)
            root.best = {}
            for section, gid in level:
                _merge(root.best, section, gid)
            root.checks = frozenset(self.root_checks)
        self._dirs: dict[str, _Dir] = {"": root}
        self._bases: dict[str, _Base] = {}
        self._sids: dict[_Vector, int] = {}
        self._results: dict[tuple[int, int], frozenset[Owner]] = {}
        self._owners_by_vector: dict[_Vector, frozenset[Owner]] = {}

    # ----------------------------------------------------------------- building

    def _add(self, items: list[_Item], section: int, gid: int) -> None:
        pair = (section, gid)
        anchored = items[0] != _GLOBSTAR
        body = items if anchored else items[1:]
        literal = [t for t in map(_literal, body) if t is not None]
        globstar = _GLOBSTAR in body
        suffix = _star_suffix(body[-1])
        if not globstar and len(literal) == len(body):  # "/a/b/c" or "c.md", "b/c.md"
            path = "/" + "/".join(literal)
            if anchored:
                self.exact.setdefault(path, []).append(pair)
            else:
                needle = path if len(body) > 1 else None
                self.tail.setdefault(literal[-1], []).append((needle, section, gid))
        elif not globstar and anchored and suffix == "" and len(literal) == len(body) - 1:
            key = "".join("/" + t for t in literal)
            self.by_dir.setdefault(key, ([], []))[1].append(pair)
        elif (
            len(body) >= 2
            and body[-2] == _GLOBSTAR
            and suffix == ""
            and len(literal) == len(body) - 2
        ):  # "/a/b/" or "a/b/" (the only globstar being the one a trailing "/" adds)
            if anchored:
                self.by_dir.setdefault("/" + "/".join(literal), ([], []))[0].append(pair)
            else:
                if len(literal) == 1:
                    self.by_name.setdefault(literal[-1], ([], {}))[0].append(pair)
                else:  # "a/b/c/": dict by "b/c", then the directory must end with "/a/b/c"
                    needle = "/" + "/".join(literal) if len(literal) > 2 else None
                    key = "/".join(literal[-2:])
                    self.dir_tail.setdefault(key, []).append((needle, section, gid))
        elif not anchored and len(body) == 1 and suffix is not None:  # "*.md", "*"
            self.suffix.setdefault(suffix, []).append(pair)
        else:
            self._add_glob(items, section, gid)

    def _add_glob(self, items: list[_Item], section: int, gid: int) -> None:
        last = items[-1]
        assert not isinstance(last, str)
        below = len(items) >= 2 and items[-2] == _GLOBSTAR
        head = items[:-2] if below else items[:-1]
        if below and not head:
            self.base_globs.append((re.compile(_segment_regex(last)).fullmatch, section, gid))
            return
        if not below or _star_suffix(last) != "":
            # Basename checks sharing a regex are tested together, once per basename.
            source = _segment_regex(last)
            group = self.checks.get(source)
            if group is None:
                group = self.checks[source] = (re.compile(source).fullmatch, [])
                start = last[0].text if last and isinstance(last[0], _Lit) else ""
                end = last[-1].text if len(last) > 1 and isinstance(last[-1], _Lit) else ""
                if start or end:
                    index = self.check_prefix if len(start) >= len(end) else self.check_suffix
                    index.setdefault(max(start, end, key=len), []).append(group)
                else:
                    self.check_other.append(group)
            group[1].append(gid)
            if not head:
                self.root_checks.append(gid)
                return
        regex = _items_regex(head)
        texts = [_literal(item) for item in head]
        bucket = self.anywhere
        if _GLOBSTAR not in head:  # a fixed depth: the directories to test are known by...
            known = len(texts) - texts.index(None) if None in texts else 0
            if known == 0:  # ... themselves
                key = "".join("/" + t for t in texts if t is not None)
                bucket = self.by_parent.setdefault(key + "/", {})
            elif known == 1:  # ... their parent directory
                key = "".join("/" + t for t in texts[:-1] if t is not None)
                bucket = self.by_parent.setdefault(key, {})
            elif texts[-1] is not None:  # ... their name
                bucket = self.by_name.setdefault(texts[-1], ([], {}))[1]
            elif known == 2:  # ... their grandparent directory
                key = "".join("/" + t for t in texts[:-2] if t is not None)
                bucket = self.by_grandparent.setdefault(key, {})
            elif named := [(p, t) for p, t in enumerate(texts) if t is not None]:
                # ... the rarest name they have at some position
                position, text = min(named, key=lambda n: (self.frequency[n[1]], -n[0]))
                bucket = self.by_depth.setdefault((len(head), position, text), {})
                self.depths.setdefault(len(head), set()).add(position)
        elif texts[-1] is not None:
            bucket = self.by_name.setdefault(texts[-1], ([], {}))[1]
        trigger = bucket.get(regex)
        if trigger is None:
            trigger = bucket[regex] = _Trigger(re.compile(regex).fullmatch)
        if not below:
            trigger.checks_here.append(gid)
        elif _star_suffix(last) != "":
            trigger.checks_below.append(gid)
        else:
            trigger.below.append((section, gid))

    # ----------------------------------------------------------------- states

    def _vector(self, best: _Best) -> tuple[_Vector, int]:
        """``best`` as a tuple, and a number shared by equal tuples."""
        vector = tuple(map(best.get, range(self.sections), repeat(-1)))
        sid = self._sids.get(vector)
        if sid is None:
            sid = self._sids[vector] = len(self._sids)
        return vector, sid

    def _dir(self, directory: str) -> _Dir:
        """The state of ``directory`` (``"/a/b"``), built from its parent's."""
        cut = directory.rfind("/")
        up = directory.rfind("/", 0, cut) if cut > 0 else -1
        name = directory[cut + 1 :]
        parent = self._dirs.get(directory[:cut]) or self._dir(directory[:cut])
        anchored, level = self.by_dir.get(directory) or ((), ())
        named, triggers = self.by_name.get(name) or ((), None)
        needles = self.dir_tail.get(directory[up + 1 :]) if up >= 0 else None
        fired = [t for t in triggers.values() if t.test(directory)] if triggers else []
        for found in (
            self.by_parent.get(directory + "/"),
            self.by_parent.get(directory[:cut]),
            self.by_grandparent.get(directory[:up]) if up >= 0 else None,
        ):
            if found:
                fired.extend(t for t in found.values() if t.test(directory))
        if self.depths and (depth := directory.count("/")) in self.depths:
            names = directory[1:].split("/")
            for position in self.depths[depth]:
                bucket = self.by_depth.get((depth, position, names[position]))
                if bucket:
                    fired.extend(t for t in bucket.values() if t.test(directory))
        if self.anywhere:
            fired.extend(t for t in self.anywhere.values() if t.test(directory))
        if not (anchored or named or needles or fired or level):
            state = self._dirs[directory] = parent.below
            return state
        inherited, inherited_checks = parent.inherited, parent.inherited_checks
        if anchored or named or needles or fired:
            inherited = dict(inherited)
            for section, gid in anchored:
                _merge(inherited, section, gid)
            for section, gid in named:
                _merge(inherited, section, gid)
            for needle, section, gid in needles or ():
                if needle is None or directory.endswith(needle):
                    _merge(inherited, section, gid)
        here: list[int] = []
        for trigger in fired:
            for section, gid in trigger.below:
                _merge(inherited, section, gid)
            if trigger.checks_below:
                inherited_checks = inherited_checks.union(trigger.checks_below)
            here.extend(trigger.checks_here)
        if inherited is parent.inherited and inherited_checks is parent.inherited_checks:
            state = parent.below
        else:
            state = _Dir(inherited, inherited_checks)
        if level or here:
            below, state = state, _Dir(inherited, inherited_checks)
            state.below = below
            if level:
                state.best = dict(inherited)
                for section, gid in level:
                    _merge(state.best, section, gid)
            if here:
                state.checks = inherited_checks.union(here)
        self._dirs[directory] = state
        return state

    def _file_dir(self, directory: str) -> _Dir:
        state = self._dirs.get(directory) or self._dir(directory)
        if state.sid < 0:
            state.vector, state.sid = self._vector(state.best)
        return state

    def _base(self, base: str) -> _Base:
        best: _Best = {}
        size = len(base)
        for length in self.suffix_lengths:
            if length > size:
                break
            for section, gid in self.suffix.get(base[size - length :], ()):
                _merge(best, section, gid)
        tails: list[_Needle] = []
        for needle, section, gid in self.tail.get(base, ()):
            if needle is None:
                _merge(best, section, gid)
            else:
                tails.append((needle, section, gid))
        for test, section, gid in self.base_globs:
            if test(base):
                _merge(best, section, gid)
        candidates = list(self.check_other)
        for length in self.prefix_lengths:
            if length > size:
                break
            candidates.extend(self.check_prefix.get(base[:length], ()))
        for length in self.check_suffix_lengths:
            if length > size:
                break
            candidates.extend(self.check_suffix.get(base[size - length :], ()))
        hits: set[int] = set()
        for test, gids in candidates:
            if test(base):
                hits.update(gids)
        state = _Base(*self._vector(best), tuple(tails), frozenset(hits))
        self._bases[base] = state
        return state

    # ----------------------------------------------------------------- matching

    def _trim(self) -> None:
        """Start afresh once the caches hold too much (a long-lived bot process)."""
        if len(self._dirs) + len(self._bases) + len(self._results) > _CACHE_LIMIT:
            self._reset()

    def best(self, path: str) -> _Best:
        """Section index -> number of its highest matching entry, for a normalised path."""
        self._trim()
        cut = path.rfind("/")
        directory = self._file_dir(path[:cut])
        name = path[cut + 1 :]
        base = self._bases.get(name) or self._base(name)
        vector = list(map(max, directory.vector, base.vector))
        for section, gid in self._extra(path, directory, base):
            vector[section] = max(vector[section], gid)
        return {section: gid for section, gid in enumerate(vector) if gid >= 0}

    def _extra(self, path: str, directory: _Dir, base: _Base) -> list[_Pair]:
        """The exact, tail and glob matches of ``path``."""
        found = list(self.exact.get(path, ()))
        for needle, section, gid in base.tails:
            if path.endswith(needle or ""):
                found.append((section, gid))
        if not directory.checks.isdisjoint(base.hits):
            section_of = self.section_of
            found.extend((section_of[gid % _EXCLUDED], gid) for gid in directory.checks & base.hits)
        return found

    def owners(self, vector: _Vector) -> frozenset[Owner]:
        owners = self._owners_by_vector.get(vector)
        if owners is None:
            sets = self.owner_sets
            owners = _EMPTY.union(*[sets[gid] for gid in vector if 0 <= gid < _EXCLUDED])
            self._owners_by_vector[vector] = owners
        return owners

    def owners_of_paths(self, paths: Iterable[str]) -> dict[str, frozenset[Owner]]:
        self._trim()
        result: dict[str, frozenset[Owner]] = {}
        dirs, bases, results, exact = self._dirs, self._bases, self._results, self.exact
        for original in paths:
            path = original if original[:1] == "/" else "/" + original
            cut = path.rfind("/")
            name = path[cut + 1 :]
            directory = dirs.get(path[:cut])
            if directory is None or directory.sid < 0:
                directory = self._file_dir(path[:cut])
            base = bases.get(name) or self._base(name)
            if base.tails or path in exact or not directory.checks.isdisjoint(base.hits):
                extra = self._extra(path, directory, base)
                if extra:
                    vector = list(map(max, directory.vector, base.vector))
                    for section, gid in extra:
                        if vector[section] < gid:
                            vector[section] = gid
                    result[original] = self.owners(tuple(vector))
                    continue
            key = (directory.sid, base.sid)
            owners = results.get(key)
            if owners is None:
                pairs = zip(directory.vector, base.vector, strict=True)
                owners = self.owners(tuple([d if d > b else b for d, b in pairs]))
                results[key] = owners
            result[original] = owners
        return result


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
            if best[number] < _EXCLUDED:
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
