"""CODEOWNERS as GitLab reads it: parsing, matching rules, and the fast matcher.

Three implementations are compared here: the matcher (``owners_of_paths``), the plain scan
(``reference_owners``), and, for single patterns, a line-by-line port of Ruby's
``File.fnmatch`` with ``FNM_PATHNAME | FNM_DOTMATCH`` -- what GitLab calls.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugins.roulette import codeowners as co
from plugins.roulette.codeowners import (
    CODEOWNERS_LOCATIONS,
    DEFAULT_SECTION,
    Entry,
    Match,
    Owner,
    Section,
    parse,
    reference_owners,
)


def owners(text: str, path: str) -> set[str]:
    """The owners of ``path`` as strings, after checking that all the ways agree."""
    parsed = parse(text)
    fast = parsed.owners_of(path)
    assert fast == reference_owners(parsed, path), path
    assert parsed.owners_of_paths([path]) == {path: fast}
    from_matches = {o for m in parsed.matches_of(path) for o in m.owners}
    assert from_matches == set(fast)
    return {str(owner) for owner in fast}


# --------------------------------------------------------------------------- matching

MATCHING = [
    # (rule, CODEOWNERS text, path, expected owners)
    ("star alone: root file", "* @all", "README.md", {"@all"}),
    ("star alone: deep file", "* @all", "a/b/c/d.py", {"@all"}),
    ("star alone: dotfile", "* @all", ".gitlab-ci.yml", {"@all"}),
    ("leading slash added to paths", "/README.md @root", "README.md", {"@root"}),
    ("path given with a leading slash", "/README.md @root", "/README.md", {"@root"}),
    ("/docs: the root file docs", "/docs @f", "docs", {"@f"}),
    ("/docs: not the directory's content", "/docs @f", "docs/a.md", set()),
    ("/docs: not a nested file docs", "/docs @f", "a/docs", set()),
    ("docs/: the directory's content", "docs/ @d", "docs/a.md", {"@d"}),
    ("docs/: recursively", "docs/ @d", "docs/a/b/c.md", {"@d"}),
    ("docs/: a docs directory at any depth", "docs/ @d", "x/y/docs/z/a.md", {"@d"}),
    ("docs/: not a file named docs", "docs/ @d", "docs", set()),
    ("docs/: not a directory named docsx", "docs/ @d", "docsx/a.md", set()),
    ("/docs/: only at the root", "/docs/ @d", "x/docs/a.md", set()),
    ("/docs/: recursively from the root", "/docs/ @d", "docs/a/b.md", {"@d"}),
    ("docs: a file named docs at any depth", "docs @n", "a/b/docs", {"@n"}),
    ("docs: not a directory's content", "docs @n", "docs/a.md", set()),
    ("README.md at the root", "README.md @r", "README.md", {"@r"}),
    ("README.md at any depth", "README.md @r", "a/b/README.md", {"@r"}),
    ("a/b.md at any depth", "internal/README.md @r", "x/internal/README.md", {"@r"}),
    ("a/b.md: whole segments only", "internal/README.md @r", "xinternal/README.md", set()),
    ("a/b/c/ at any depth", "x/a/b/ @d", "y/x/a/b/c.txt", {"@d"}),
    ("a/b/c/: every name counts", "x/a/b/ @d", "y/a/b/c.txt", set()),
    ("/a/*/c: a glob in the middle", "/lib/*/c.txt @g", "lib/b/c.txt", {"@g"}),
    ("/a/*/c: anchored", "/lib/*/c.txt @g", "x/lib/b/c.txt", set()),
    ("/a/*/c/: a directory glob", "/lib/?b/ @g", "lib/ab/x/y", {"@g"}),
    ("lib/**: one level below lib", "lib/** @l", "lib/a.py", {"@l"}),
    ("lib/**: also below a nested lib", "lib/** @l", "x/lib/a.py", {"@l"}),
    ("lib/**: not two levels below", "lib/** @l", "lib/a/b.py", set()),
    ("/src/*: a file in src", "/src/* @s", "src/main.py", {"@s"}),
    ("/src/*: a dotfile in src", "/src/* @s", "src/.env", {"@s"}),
    ("/src/*: not deeper", "/src/* @s", "src/a/main.py", set()),
    ("*.md: a dotfile", "*.md @md", ".hidden.md", {"@md"}),
    ("*.md: in a dot directory", "*.md @md", ".github/a/.x.md", {"@md"}),
    ("*.md: not another extension", "*.md @md", "a.mdx", set()),
    ("case-sensitive name", "README.md @r", "readme.md", set()),
    ("case-sensitive extension", "*.MD @md", "a.md", set()),
    ("case-sensitive directory", "/Docs/ @d", "docs/a", set()),
    ("**/: zero directories", "/a/**/b.txt @x", "a/b.txt", {"@x"}),
    ("**/: one directory", "/a/**/b.txt @x", "a/x/b.txt", {"@x"}),
    ("**/: several directories", "/a/**/b.txt @x", "a/x/y/z/b.txt", {"@x"}),
    ("**/: dot directories", "/a/**/b.txt @x", "a/.x/b.txt", {"@x"}),
    ("**/ leading: any depth", "**/gen/ @g", "a/b/gen/c.py", {"@g"}),
    ("**/*.rb: at the root too", "**/*.rb @rb", "x.rb", {"@rb"}),
    ("a**b is a*b within a segment", "/a**b @x", "a/b", set()),
    ("?: one character", "/a?.txt @q", "ab.txt", {"@q"}),
    ("?: not zero characters", "/a?.txt @q", "a.txt", set()),
    ("?: not a slash", "/a?b @q", "a/b", set()),
    ("*: not a slash", "/a*b @q", "a/b", set()),
    ("[ab]: a", "/[ab].txt @c", "a.txt", {"@c"}),
    ("[ab]: not c", "/[ab].txt @c", "c.txt", set()),
    ("[a-c]: range", "/x[a-c] @c", "xb", {"@c"}),
    ("[!a]: negation", "/x[!a] @c", "xb", {"@c"}),
    ("[!a]: negation excludes a", "/x[!a] @c", "xa", set()),
    ("[^a]: negation too", "/x[^a] @c", "xa", set()),
    ("[!a]: never a slash", "/x[!a]y @c", "x/y", set()),
    ("unterminated [: never matches", "/x[ab @c", "x[ab", set()),
    ("braces are literal", "{a,b}.txt @br", "{a,b}.txt", {"@br"}),
    ("braces: no expansion", "{a,b}.txt @br", "a.txt", set()),
    ("backslash escapes a glob character", "/a\\*b @e", "a*b", {"@e"}),
    ("escaped star is not a wildcard", "/a\\*b @e", "axb", set()),
    ("\\# for a name starting with #", "\\#notes.md @h", "#notes.md", {"@h"}),
    ("\\# at any depth", "\\#notes.md @h", "a/#notes.md", {"@h"}),
    ("escaped spaces", "path\\ with\\ spaces/ @sp", "path with spaces/a.md", {"@sp"}),
    ("escaped space in a file name", "/my\\ file.txt @sp", "my file.txt", {"@sp"}),
    ("last match wins", "*.md @doc\nterms.md @legal", "terms.md", {"@legal"}),
    ("last match wins, in file order", "terms.md @legal\n*.md @doc", "terms.md", {"@doc"}),
    ("an ownerless entry wins too", "* @all\n/vendor/", "vendor/x.go", set()),
    ("union over sections", "* @all\n[Ruby]\n*.rb @ruby", "a.rb", {"@all", "@ruby"}),
    (
        "each section keeps its own last match",
        "*.md @a\nREADME.md @b\n[S]\nREADME.md @c\n*.md @d",
        "README.md",
        {"@b", "@d"},
    ),
    (
        "the docs' README example: root README",
        "* @admin\n[README Owners]\nREADME.md @user1 @user2\ninternal/README.md @user4\n"
        "[README other owners]\nREADME.md @user3",
        "README.md",
        {"@admin", "@user1", "@user2", "@user3"},
    ),
    (
        "the docs' README example: internal README",
        "* @admin\n[README Owners]\nREADME.md @user1 @user2\ninternal/README.md @user4\n"
        "[README other owners]\nREADME.md @user3",
        "internal/README.md",
        {"@admin", "@user4", "@user3"},
    ),
    ("exclusion", "* @all\n!pom.xml", "pom.xml", set()),
    ("exclusion: other paths keep owners", "* @all\n!pom.xml", "a.xml", {"@all"}),
    ("exclusion before an entry still wins", "!*.rb\n/special/*.rb @ruby", "special/a.rb", set()),
    (
        "exclusion cannot be re-included",
        "*.rb @ruby\n!/config/**/*.rb\n/config/routes.rb @ops",
        "config/routes.rb",
        set(),
    ),
    (
        "exclusion only affects its section",
        "* @all\n!*.lock\n[Deps]\n*.lock @deps",
        "yarn.lock",
        {"@deps"},
    ),
    (
        "exclusion of a directory",
        "* @all\n!**/generated/",
        "a/generated/b/c.py",
        set(),
    ),
    ("default owners of a section", "[Docs] @docs-team\ndocs/", "docs/a.md", {"@docs-team"}),
    (
        "specific owners override default owners",
        "[Db] @db @agarcia\nmodel/db/\nconfig/db/setup.md @docs",
        "config/db/setup.md",
        {"@docs"},
    ),
    ("@group/sub owner", "* @g/sub", "a", {"@g/sub"}),
    ("email owner lower-cased", "* Jane.Doe@Example.COM", "a", {"jane.doe@example.com"}),
    ("role owner", "* @@maintainer", "a", {"@@maintainer"}),
]


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [pytest.param(text, path, expected, id=rule) for rule, text, path, expected in MATCHING],
)
def test_matching(text: str, path: str, expected: set[str]) -> None:
    assert owners(text, path) == expected


# --------------------------------------------------------------------------- parsing


def test_lookup_order() -> None:
    assert CODEOWNERS_LOCATIONS == ("CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")


def test_blank_and_comment_lines_are_skipped_but_counted() -> None:
    parsed = parse("# comment\n\n   \n\t# indented comment\n*.py @py\n")
    (section,) = parsed.sections
    assert section.entries == (Entry("*.py", (Owner("name", "py"),), False, 5),)
    assert parsed.warnings == ()


def test_line_splits_at_the_first_unescaped_whitespace() -> None:
    parsed = parse("a\\ b.txt\t @x   @y\n\\#x @z\nfolder with spaces/*.md @g\n")
    entries = parsed.sections[0].entries
    assert [e.pattern for e in entries] == ["a\\ b.txt", "\\#x", "folder"]
    assert entries[0].owners == (Owner("name", "x"), Owner("name", "y"))
    # GitLab: "folder with spaces/*.md @group" is the path "folder" with malformed owners
    assert entries[2].owners == (Owner("name", "g"),)
    assert parsed.warnings == (
        "line 3: ignored malformed owner 'with'",
        "line 3: ignored malformed owner 'spaces/*.md'",
    )


@pytest.mark.parametrize("separator", ["\x1c", "\x1d", "\x1e", "\x1f"])
def test_ascii_separators_are_not_whitespace_as_in_gitlab(separator: str) -> None:
    """GitLab splits a line at Ruby's ``\\s`` (space, tab, line and form feeds); Python's
    ``str.split()`` also splits at the ASCII separators U+001C to U+001F, which are part
    of the pattern or the owner token here."""
    parsed = parse(f"/a{separator}b/ @x\n/c/ @y{separator}@z\n")
    assert [e.pattern for e in parsed.sections[0].entries] == [f"/a{separator}b/", "/c/"]
    assert parsed.owners_of(f"a{separator}b/f.txt") == {Owner("name", "x")}
    assert parsed.owners_of("a/f.txt") == frozenset()
    # one token: a name ends at the separator, the next "@" starts one, and GitLab's
    # email pattern ([^@\\s]+@[^@\\s]+) takes the separator in too
    assert parsed.owners_of("c/f.txt") == {
        Owner("name", "y"),
        Owner("name", "z"),
        Owner("email", f"y{separator}@z"),
    }


def test_owner_kinds() -> None:
    text = (
        "* @alice @my-group @org/team/sub Alice@Example.com @@developer @@Maintainers @@owner"
        " @alice\n"
    )
    entry = parse(text).sections[0].entries[0]
    assert entry.owners == (
        Owner("name", "alice"),
        Owner("name", "my-group"),
        Owner("group", "org/team/sub"),
        Owner("email", "alice@example.com"),
        Owner("role", "developer"),
        Owner("role", "maintainer"),
        Owner("role", "owner"),
    )
    assert [str(o) for o in entry.owners[2:5]] == [
        "@org/team/sub",
        "alice@example.com",
        "@@developer",
    ]


def test_owners_sort() -> None:
    assert sorted([Owner("role", "owner"), Owner("email", "a@b.c"), Owner("name", "z")]) == [
        Owner("email", "a@b.c"),
        Owner("name", "z"),
        Owner("role", "owner"),
    ]


def test_malformed_owners_are_ignored_with_a_warning() -> None:
    parsed = parse("\n*.py @ foo @@guest @bad name @ok @-x @@ @@guests2 #\n")
    assert parsed.sections[0].entries[0].owners == (Owner("name", "bad"), Owner("name", "ok"))
    assert parsed.warnings == tuple(
        f"line 2: ignored malformed owner {token!r}"
        for token in ("@", "foo", "@@guest", "name", "@-x", "@@", "@@guests2", "#")
    )


def test_owners_are_found_within_tokens_as_gitlab_does() -> None:
    # GitLab's ReferenceExtractor searches each token: punctuation around an owner is fine.
    entry = parse("* @alice, @bob. (carol@example.com) @org/team;\n").sections[0].entries[0]
    assert entry.owners == (
        Owner("name", "alice"),
        Owner("name", "bob"),
        Owner("email", "(carol@example.com"),  # GitLab's EMAIL_REGEXP keeps the "(" too
        Owner("group", "org/team"),
    )
    # an email alone, lower-cased; an "@" after punctuation starts a name as well; an email
    # ends at a word character; at most 100 characters before the "@"
    entry = parse(f"* Carol@Example.COM a,@b.c x@y. {'x' * 101}@y.z\n").sections[0].entries[0]
    assert entry.owners == (
        Owner("email", "carol@example.com"),
        Owner("name", "b.c"),
        Owner("email", "a,@b.c"),
        Owner("email", "x@y"),
        Owner("email", f"{'x' * 100}@y.z"),
    )
    # an inline comment is not a comment: owners in it count (as GitLab's docs warn)
    parsed = parse("docs/ @docs # ask @lead\n")
    assert parsed.sections[0].entries[0].owners == (Owner("name", "docs"), Owner("name", "lead"))
    assert parsed.warnings == (
        "line 1: ignored malformed owner '#'",
        "line 1: ignored malformed owner 'ask'",
    )


def test_an_owner_named_twice_is_kept_once_in_order() -> None:
    # "@a" and "@a," name one owner, as do "@@owners" and "@@Owner", or two cases of an email.
    parsed = parse("* @a @b @a, USER@x.org user@x.org @b\ndocs/ @@owners @c @@Owner @c\n")
    first, second = parsed.sections[0].entries
    assert first.owners == (Owner("name", "a"), Owner("name", "b"), Owner("email", "user@x.org"))
    assert second.owners == (Owner("role", "owner"), Owner("name", "c"))
    assert parsed.warnings == ()


def test_exclusions_take_no_owners() -> None:
    parsed = parse("* @all\n!vendor/ @someone\n")
    assert parsed.sections[0].entries[1] == Entry("vendor/", (), True, 2)
    assert parsed.warnings == ("line 2: ignored owner '@someone' on an exclusion",)


def test_sections() -> None:
    parsed = parse(
        "* @all\n"
        "[Docs] @docs-team @docs-team\n"
        "docs/\n"
        "^[Go]\n"
        "*.go @go\n"
        "[Ruby][3] @ruby\n"
        "[Zero][0]\n"
        "[Bad][x]\n"
        "^[Both][2]\n"
    )
    assert [(s.name, s.optional, s.approvals, s.default_owners) for s in parsed.sections] == [
        (DEFAULT_SECTION, False, 1, ()),
        ("Docs", False, 1, (Owner("name", "docs-team"),)),
        ("Go", True, 1, ()),
        ("Ruby", False, 3, (Owner("name", "ruby"),)),
        ("Zero", False, 1, ()),
        ("Bad", False, 1, ()),
        ("Both", True, 2, ()),
    ]
    assert parsed.sections[0].entries == (Entry("*", (Owner("name", "all"),), False, 1),)
    assert parsed.sections[1].entries == (Entry("docs/", (Owner("name", "docs-team"),), False, 3),)
    assert parsed.warnings == (
        "line 8: invalid approval count 'x', using 1",
        "line 9: an optional section takes no approval count",
    )


def test_default_owners_apply_to_entries_without_owner_tokens_only() -> None:
    # GitLab falls back to the defaults when the owner *text* is empty; an entry whose
    # owners are all malformed has no owners (and GitLab auto-approves it).
    parsed = parse("[Docs] @docs\ndocs/\nREADME.md @me\nCHANGELOG.md foo\n")
    assert [e.owners for e in parsed.sections[1].entries] == [
        (Owner("name", "docs"),),
        (Owner("name", "me"),),
        (),
    ]


def test_duplicate_sections_merge_case_insensitively() -> None:
    parsed = parse(
        "[Documentation] @docs\n"
        "ee/docs/\n"
        "[Database]\n"
        "README.md @database\n"
        "^[DOCUMENTATION][2] @other\n"
        "README.md\n"
        "^[database]\n"
        "model/ @db\n"
    )
    docs, database = parsed.sections[1:]
    assert (docs.name, docs.optional, docs.approvals) == ("Documentation", False, 2)
    assert docs.default_owners == (Owner("name", "docs"),)
    # entries in file order; each takes the default owners of the header it stands under
    assert docs.entries == (
        Entry("ee/docs/", (Owner("name", "docs"),), False, 2),
        Entry("README.md", (Owner("name", "other"),), False, 6),
    )
    assert (database.name, database.optional) == ("Database", False)
    assert [e.line for e in database.entries] == [4, 8]
    assert owners("[Docs]\n*.md @a\n[Ruby]\n*.rb @r\n[docs]\nREADME.md @b", "README.md") == {"@b"}


def test_optional_only_if_every_header_is() -> None:
    parsed = parse("^[Go]\n*.go @a\n^[GO]\n*.mod @b\n^[Py]\n[py]\n")
    assert [(s.name, s.optional) for s in parsed.sections[1:]] == [("Go", True), ("Py", False)]


def test_malformed_header_is_an_entry_of_the_current_section() -> None:
    parsed = parse("* @group\n[Section name\ndocs/ @docs_group\n[Docs]\n[Oops\n")
    default, docs = parsed.sections
    assert [e.pattern for e in default.entries] == ["*", "[Section", "docs/"]
    assert default.entries[1].owners == ()  # "name" is a malformed owner
    assert [e.pattern for e in docs.entries] == ["[Oops"]
    assert parsed.warnings == ("line 2: ignored malformed owner 'name'",)
    # fnmatch never matches an unterminated "[": the entry owns nothing
    assert owners("[Oops @x", "[Oops") == set()
    assert owners("* @all\n[Oops", "[Oops") == {"@all"}


def test_header_edge_cases() -> None:
    parsed = parse("[] @x\n[Mm]akefile @y\n")
    assert [s.name for s in parsed.sections] == [DEFAULT_SECTION, "Mm"]
    assert [e.pattern for e in parsed.sections[0].entries] == ["[]"]
    assert parsed.warnings == (
        "line 1: section header without a name, read as a pattern",
        "line 2: ignored text after section header: 'akefile @y'",
    )


def test_crlf_and_bom() -> None:
    parsed = parse("\ufeff* @all\r\n[Docs]\r\ndocs/ @d\r\n")
    assert [s.name for s in parsed.sections] == [DEFAULT_SECTION, "Docs"]
    assert parsed.owners_of("docs/x") == {Owner("name", "all"), Owner("name", "d")}


def test_empty_file() -> None:
    parsed = parse("")
    assert parsed.sections == (Section(DEFAULT_SECTION, False, 1, (), ()),)
    assert parsed.owners_of("a") == frozenset()
    assert parsed.matches_of("a") == []


# --------------------------------------------------------------------------- API


def test_matches_of_explains_each_section() -> None:
    parsed = parse("* @all\n*.md @docs\n[Sec] @sec\n/config/\n!/config/x.md\n[Ruby]\n*.rb @r\n")
    assert parsed.matches_of("config/a.md") == [
        Match(DEFAULT_SECTION, "*.md", 2, (Owner("name", "docs"),)),
        Match("Sec", "/config/", 4, (Owner("name", "sec"),)),
    ]
    # an excluded section gives no match
    assert parsed.matches_of("config/x.md") == [
        Match(DEFAULT_SECTION, "*.md", 2, (Owner("name", "docs"),))
    ]


def test_owners_of_paths_and_all_owners() -> None:
    parsed = parse("* @all\n/docs/ @docs\n*.rb @ruby\n!/docs/skip.md\n")
    paths = ["docs/a.md", "/docs/a.md", "lib/x.rb", "docs/skip.md", "docs/a.md"]
    result = parsed.owners_of_paths(paths)
    assert set(result) == {"docs/a.md", "/docs/a.md", "lib/x.rb", "docs/skip.md"}
    assert result["docs/a.md"] == result["/docs/a.md"] == {Owner("name", "docs")}
    assert result["lib/x.rb"] == {Owner("name", "ruby")}
    assert result["docs/skip.md"] == frozenset()
    assert parsed.all_owners(paths) == {Owner("name", "docs"), Owner("name", "ruby")}
    assert parsed.all_owners([]) == frozenset()
    # the caches give the same answers on a second call
    assert parsed.owners_of_paths(paths) == result


def test_a_star_beside_one_name_is_found_by_that_name() -> None:
    # "**/*/b/" needs a directory "b" with a parent; "**/a/*/" a directory below "a".
    parsed = parse("* @all\n**/*/b/ @deep\n**/a/*/ @child\n**/*/b/*.md @docs\n")
    expected = {
        "b/f.py": "all",
        "x/b/f.py": "deep",
        "x/b/y/f.py": "deep",
        "x/b/r.md": "docs",
        "a/f.py": "all",
        "a/x/f.py": "child",
        "q/a/x/y/f.py": "child",
        "a/b/f.py": "child",  # both: the later entry wins
    }
    result = parsed.owners_of_paths(list(expected))
    assert result == {path: frozenset({Owner("name", o)}) for path, o in expected.items()}
    for path in expected:
        assert result[path] == reference_owners(parsed, path)


def test_a_path_thousands_of_directories_deep_is_matched() -> None:
    # Git puts no limit on depth; each directory's state is built from its parent's, in a
    # loop (a recursion stopped at Python's limit, about a thousand directories).
    parsed = parse("* @all\na/ @a\n/a/**/b/ @b\n**/c/*/ @c\n")
    deep = "/".join(["a"] * 3000)
    expected = {"f.py": "a", "b/f.py": "b", "c/d/f.py": "c", "c/f.py": "a"}
    paths = [f"{deep}/{tail}" for tail in expected]
    result = parsed.owners_of_paths(paths)
    assert result == {f"{deep}/{t}": frozenset({Owner("name", o)}) for t, o in expected.items()}
    for path in paths:
        assert result[path] == reference_owners(parsed, path)
    fresh = parse("a/ @a\n")  # and one path alone, on empty caches
    assert [m.owners for m in fresh.matches_of(f"{deep}/x")] == [(Owner("name", "a"),)]


def test_directories_meeting_the_same_rules_share_one_state_and_answers() -> None:
    # /u0 ... /u9 each have rules for their own files only; below them, every "src" meets
    # the same rule: one state for all of them, so one answer per file name, not one per
    # directory (a big change in a monorepo is mostly such directories).
    text = "* @all\nsrc/ @src\n" + "".join(f"/u{n}/*.rb @u{n}\n" for n in range(10))
    parsed = parse(text)
    paths = [f"u{n}/src/{name}" for n in range(10) for name in ("a.py", "b.rb")]
    result = parsed.owners_of_paths(paths)
    assert all(result[p] == {Owner("name", "src")} for p in paths)
    index = parsed._index
    assert len({id(index._dirs[f"/u{n}/src"]) for n in range(10)}) == 1
    assert index._answered == 2


def test_a_file_of_name_rules_gives_a_directory_the_or_of_its_names() -> None:
    # Every directory rule here is met by names alone, so a directory's state is the OR of
    # what its names give (alone, under their parent's name, as a parent), and only the
    # directories holding files get one; "x/a/b/" needs the whole path: a directory "b"
    # in an "a" is walked down to from its nearest known ancestor, which may be a state
    # made from names.
    text = (
        "* @all\n*/ @top\nb/ @b\na/b/ @ab\nx/a/b/ @xab\nb/*.md @bmd\n**/*/c/ @c\n"
        "**/d/* @d\n*.rb @rb\n[S]\nb/ @sb\nq/*/ @q\n"
    )
    parsed = parse(text)
    index = parsed._index
    assert index.by_name_only
    expected = {
        "f.py": {"all"},
        "m/f.py": {"top"},
        "m/b/f.py": {"b", "sb"},
        "m/b/r.md": {"bmd", "sb"},
        "m/b/n/r.md": {"b", "sb"},  # "b/*.md": the files directly in "b" only
        "b/f.rb": {"rb", "sb"},
        "m/a/b/f.py": {"ab", "sb"},
        "x/a/b/f.py": {"xab", "sb"},
        "x/a/b/n/f.py": {"xab", "sb"},  # below a walked directory, by its names again
        "y/x/a/b/f.py": {"xab", "sb"},
        "c/f.py": {"top"},  # "**/*/c/": a "c" with a parent
        "m/c/f.py": {"c"},
        "m/d/f.py": {"d"},
        "m/d/n/f.py": {"top"},
        "q/n/f.py": {"top", "q"},
        "q/n/b/f.py": {"b", "q"},  # in [S], "q/*/" is the later entry
    }
    for order in (list(expected), list(reversed(expected))):
        parsed = parse(text)
        result = parsed.owners_of_paths(order)
        for path in order:
            assert result[path] == reference_owners(parsed, path), path
            assert {str(owner)[1:] for owner in result[path]} == expected[path], path
    index = parsed._index
    assert "/m/b/n" in index._dirs and "/m/b" in index._dirs and "/m" in index._dirs
    assert "/q" not in index._dirs  # no file directly in it: no state of its own
    assert "/x/a" in index._dirs and "/m/a" in index._dirs  # walked down to ".../a/b"


def test_a_big_match_pauses_the_garbage_collector_and_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = parse("* @all\n/a/ @a\n")
    paths = [f"a/{n}/f.py" for n in range(co._PAUSE_FROM)]
    seen: list[bool] = []
    build = co._Index._dir

    def watched(index: co._Index, directory: str) -> co._Dir:
        seen.append(gc.isenabled())
        return build(index, directory)

    monkeypatch.setattr(co._Index, "_dir", watched)
    assert gc.isenabled()
    assert parsed.owners_of_paths(paths)[paths[0]] == {Owner("name", "a")}
    assert seen and not any(seen)  # paused while the states were made
    assert gc.isenabled()
    parsed.owners_of_paths(["b/f.py"])  # one path: not worth a pause
    assert seen[-1] and gc.isenabled()

    def failing(index: co._Index, directory: str) -> co._Dir:
        raise RuntimeError("boom")

    monkeypatch.setattr(co._Index, "_dir", failing)
    with pytest.raises(RuntimeError):
        parsed.owners_of_paths([f"c/{n}/f.py" for n in range(co._PAUSE_FROM)])
    assert gc.isenabled()  # restarted even when the match raised
    gc.disable()  # paused by the program: left paused
    try:
        monkeypatch.setattr(co._Index, "_dir", build)
        parsed.owners_of_paths([f"d/{n}/f.py" for n in range(co._PAUSE_FROM)])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_big_file_is_parsed_with_the_garbage_collector_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = "/team/a/*.py @alice @org/backend\n"
    big = line * (co._PARSE_PAUSE_FROM // len(line) + 1)
    seen: list[bool] = []
    read = co._OwnerReader.new

    def watched(
        reader: co._OwnerReader, text: str
    ) -> tuple[bool, tuple[Owner, ...], tuple[str, ...]]:
        seen.append(gc.isenabled())
        return read(reader, text)

    monkeypatch.setattr(co._OwnerReader, "new", watched)
    parsed = parse(big)
    assert seen == [False]  # one distinct owner text, read while paused
    assert gc.isenabled()
    assert parsed.owners_of("team/a/x.py") == {
        Owner("name", "alice"),
        Owner("group", "org/backend"),
    }
    parse(line)  # a small file: not worth a pause
    assert seen == [False, True] and gc.isenabled()


# What a big match leaves: states for directories at several depths, some that add
# rules below them, some only for their own files, some nothing (their parent's).
_BIG_FILE = "* @all\n/a/ @a\n/a/*/x/*.py @x\n**/b/* @b\n/c/**/d/ @d\n!/a/9/\n"
_BIG_PATHS = [
    f"{top}/{n}/{sub}/f{n}.py"
    for top in ("a", "c", "e")
    for n in range(co._PAUSE_FROM)
    for sub in ("x", "b", "d/e")
]


def test_the_objects_serve_froze_stay_frozen_through_a_big_match() -> None:
    gc.collect()
    gc.freeze()  # as ``serve`` does once started: start-up objects leave the scans
    try:
        frozen = gc.get_freeze_count()
        parsed = parse(_BIG_FILE)
        result = parsed.owners_of_paths(_BIG_PATHS)
        assert gc.get_freeze_count() == frozen
        assert result["a/1/x/f1.py"] == {Owner("name", "x")}
        assert result["a/9/x/f9.py"] == frozenset()  # excluded: no owner in its section
        assert result["c/2/d/e/f2.py"] == {Owner("name", "d")}
        assert all(result[path] == reference_owners(parsed, path) for path in _BIG_PATHS)
    finally:
        gc.unfreeze()


def test_a_dropped_index_is_freed_without_the_collector() -> None:
    """No cache of a match holds a reference cycle: dropping the parsed file (the service
    keeps the last few) frees all of it by reference counting, at once."""
    gc.collect()
    gc.disable()
    try:
        parsed = parse(_BIG_FILE)
        parsed.owners_of_paths(_BIG_PATHS)
        parsed.owners_of_paths(["a/new/x/f.py", "g/h.py"])  # a small match: no pause
        parsed.matches_of("a/1/x/f1.py")
        del parsed
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep what the collector finds unreachable
        gc.collect()
        # (other threads' garbage may be there too: only the matcher's objects count)
        assert [o for o in gc.garbage if type(o).__module__ == co.__name__] == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(co, "_CACHE_LIMIT", 10)
    parsed = parse("* @all\n/a/ @a\n")
    index = parsed._index
    for batch in range(3):  # new paths each time: the caches would grow
        paths = [f"a/{batch}-{n}/{n}.txt" for n in range(30)]
        paths += [f"b/{batch}-{n}.txt" for n in range(30)]
        result = parsed.owners_of_paths(paths)
        assert all(result[p] == {Owner("name", "a")} for p in paths[:30])
        assert all(result[p] == {Owner("name", "all")} for p in paths[30:])
        # what the caches hold is counted right, and starts afresh before each batch
        # once past the bound: never more than one batch's worth beyond it
        held = sum(len(answers) for answers in index._answers.values())
        assert index._answered == held
        assert len(index._dirs) + len(index._bases) + held <= 10 + 3 * len(paths)


def test_paths_that_match_as_they_are_read_get_their_own_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An iterable of paths that asks the same file for owners while it is read (and so
    starts its caches afresh, with small bounds) must not get answers cached for others."""
    monkeypatch.setattr(co, "_CACHE_LIMIT", 6)
    parsed = parse("*.py @py\n*.md @doc\n/src/ @src\n/docs/*.md @docs\n")
    paths = [f"{d}/{n}" for d in ("src", "docs", "x", "src/y") for n in ("a.py", "b.md", "c")]

    def asking() -> Iterator[str]:
        for path in paths:
            parsed.owners_of(paths[-1 - paths.index(path)])
            yield path

    result = parsed.owners_of_paths(asking())
    assert result == {path: reference_owners(parsed, path) for path in paths}


def _resets(
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    paths: list[str],
    bound: int,
    check: Callable[[co.CodeOwners, dict[str, frozenset[Owner]]], None],
) -> int:
    """How often the caches of ``text``'s matcher start afresh over three matches of
    ``paths`` with a byte bound of ``bound``; ``check`` looks at each match's answers."""
    monkeypatch.setattr(co, "_CACHE_BYTES", bound)
    parsed = parse(text)
    index = parsed._index
    count = 0
    reset = index._reset

    def counted() -> None:
        nonlocal count
        count += 1
        reset()

    monkeypatch.setattr(index, "_reset", counted)
    for _ in range(3):
        check(parsed, parsed.owners_of_paths(paths))
    return count


def test_caches_are_bounded_by_the_size_of_their_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each state holds masks of one bit per entry: a file of many entries starts its
    caches afresh once those would pass the byte bound, and answers the same."""
    text = "* @all\n" + "".join(f"/z/{n}/ @z{n}\n" for n in range(2_000)) + "/a/ @a\n!/a/skip/\n"
    paths = [f"z/{n}/{n}.txt" for n in range(0, 2_000, 50)] + ["a/skip/x.txt", "a/b/y.md"]

    def check(_parsed: co.CodeOwners, result: dict[str, frozenset[Owner]]) -> None:
        assert result["z/50/50.txt"] == {Owner("name", "z50")}
        assert result["a/skip/x.txt"] == frozenset()  # the exclusion wins its section
        assert result["a/b/y.md"] == {Owner("name", "a")}

    assert _resets(monkeypatch, text, paths, co._CACHE_BYTES, check) == 0
    assert _resets(monkeypatch, text, paths, 20_000, check) >= 2  # 40 states of 2,003 bits


def test_the_states_of_unanchored_patterns_count_toward_the_byte_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file whose directory patterns are all unanchored (``b/``) gives each directory a
    state made from its names; those states hold masks too, and start afresh as well."""
    text = "*.md @docs\n" + "".join(f"d{n}/ @o{n}\n" for n in range(2_000))
    paths = [f"x{n}/d{n}/f.py" for n in range(0, 2_000, 40)] + ["x/y/z.md"]

    def check(parsed: co.CodeOwners, result: dict[str, frozenset[Owner]]) -> None:
        assert parsed._index.by_name_only  # the states come from _dir_by_names
        assert result == {path: reference_owners(parsed, path) for path in paths}
        assert result["x40/d40/f.py"] == {Owner("name", "o40")}

    assert _resets(monkeypatch, text, paths, co._CACHE_BYTES, check) == 0
    assert _resets(monkeypatch, text, paths, 20_000, check) >= 2  # 51 states of 2,001 bits


def _sharing_workload(siblings: int) -> tuple[str, list[str]]:
    """``/a/N/`` owned one by one, and ``src/`` below each: each ``/a/N/src`` meets the
    rules of ``src/`` below a state of its own (no two share one), while the
    ``/b/N/src`` below the unowned ``/b/N`` all meet them below one state."""
    text = "* @all\nsrc/ @src\n" + "".join(f"/a/{n}/ @a{n}\n" for n in range(siblings))
    paths = [f"a/{n}/src/main.py" for n in range(siblings)]
    paths += [f"b/{n}/src/main.py" for n in range(siblings)]
    return text, paths


def test_derived_states_are_shared_while_that_pays_and_answers_stay_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(co, "_SHARING_TRIAL", 64)
    text, paths = _sharing_workload(100)
    parsed = parse(text)
    index = parsed._index
    # the /b/N/src come first: every one after the first finds the shared state
    result = parsed.owners_of_paths(paths[100:] + paths[:100])
    assert index._sharing
    assert index._hits >= 99
    assert len({id(index._dirs[f"/b/{n}/src"]) for n in range(100)}) == 1
    assert result == {path: reference_owners(parsed, path) for path in paths}

    # the /a/N/src first: 64 lookups without a hit, and sharing stops (the /b/N/src
    # then get a state each, with the same owners)
    parsed = parse(text)
    index = parsed._index
    result = parsed.owners_of_paths(paths)
    assert not index._sharing
    assert index._derived == {}
    assert len({id(index._dirs[f"/b/{n}/src"]) for n in range(100)}) > 1
    assert result == {path: reference_owners(parsed, path) for path in paths}
    assert result["a/7/src/main.py"] == {Owner("name", "a7")}  # the last entry wins
    assert result["b/7/src/main.py"] == {Owner("name", "src")}

    # until the caches start afresh: then sharing is tried again
    monkeypatch.setattr(co, "_CACHE_LIMIT", 10)
    parsed.owners_of_paths(paths[100:])
    assert index._sharing
    assert index._hits >= 99


# --------------------------------------------------------------------------- Ruby's fnmatch

# A port of ``fnmatch``/``fnmatch_helper``/``bracket`` from Ruby's dir.c, with
# FNM_PATHNAME | FNM_DOTMATCH (no FNM_NOESCAPE, no FNM_CASEFOLD, no FNM_EXTGLOB), and
# GitLab's ``normalize_pattern``: the oracle for what GitLab does with one pattern.


def _bracket(pat: str, p: int, ch: str) -> int | None:
    n = len(pat)
    if p >= n:
        return None
    negate = pat[p] in "!^"
    p += negate
    ok = False
    while not (p < n and pat[p] == "]"):
        t1 = p + 1 if p < n and pat[p] == "\\" else p
        if t1 >= n:
            return None
        p = t1 + 1
        if p >= n:
            return None
        if pat[p] == "-" and (p + 1 >= n or pat[p + 1] != "]"):
            t2 = p + 2 if p + 1 < n and pat[p + 1] == "\\" else p + 1
            if t2 >= n:
                return None
            p = t2 + 1
            if ok:
                continue
            if ch in (pat[t1], pat[t2]) or pat[t1] <= ch <= pat[t2]:
                ok = True
        elif not ok and pat[t1] == ch:
            ok = True
    return None if ok == negate else p + 1


def _helper(pat: str, p: int, text: str, s: int) -> tuple[bool, int, int]:
    n, m = len(pat), len(text)

    def pend(i: int) -> bool:
        return i >= n or pat[i] == "/"

    def send(i: int) -> bool:
        return i >= m or text[i] == "/"

    ptmp = stmp = -1
    while True:
        char = pat[p] if p < n else ""
        if char == "*":
            while p < n and pat[p] == "*":
                p += 1
            q = p + 1 if p < n and pat[p] == "\\" else p
            if pend(q):
                return True, q, s
            if send(s):
                return False, p, s
            ptmp, stmp = p, s
            continue
        if char == "?":
            if send(s):
                return False, p, s
            p, s = p + 1, s + 1
            continue
        if char == "[":
            if send(s):
                return False, p, s
            after = _bracket(pat, p + 1, text[s])
            if after is not None:
                p, s = after, s + 1
                continue
        else:
            p = p + 1 if p < n and pat[p] == "\\" else p
            if send(s):
                return pend(p), p, s
            if not pend(p) and text[s] == pat[p]:
                p, s = p + 1, s + 1
                continue
        if ptmp >= 0:  # failed: try the next position of the last "*"
            stmp += 1
            p, s = ptmp, stmp
            continue
        return False, p, s


def ruby_fnmatch(pat: str, text: str) -> bool:
    p = s = 0
    ptmp = stmp = -1
    while True:
        if pat.startswith("**/", p):
            while pat.startswith("**/", p):
                p += 3
            ptmp, stmp = p, s
        ok, p2, s2 = _helper(pat, p, text, s)
        if ok:
            while s2 < len(text) and text[s2] != "/":
                s2 += 1
            if p2 < len(pat) and s2 < len(text):
                p, s = p2 + 1, s2 + 1
                continue
            if p2 >= len(pat) and s2 >= len(text):
                return True
        if ptmp >= 0:  # failed: try the next directory for the last "**/"
            while stmp < len(text) and text[stmp] != "/":
                stmp += 1
            if stmp < len(text):
                stmp += 1
                p, s = ptmp, stmp
                continue
        return False


def gitlab_matches(pattern: str, path: str) -> bool:
    """GitLab: ``File.fnmatch?(normalize_pattern(pattern), "/" + path, flags)``."""
    if pattern != "*":
        pattern = re.sub(r"\A\\#", "#", pattern)
        pattern = re.sub(r"\\[ \t\r\n\f\v]+", " ", pattern)
        if not pattern.startswith("/"):
            pattern = "/**/" + pattern
        if pattern.endswith("/"):
            pattern += "**/*"
    else:
        pattern = "/**/*"
    return ruby_fnmatch(pattern, path if path.startswith("/") else "/" + path)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.rb", "config/database.rb", True),
        ("**/*.rb", "app/controllers/users/stars_controller.rb", True),
        ("lib/**", "lib/a/b", False),
        ("/docs", "docs/a", False),
        ("/x[a-", "x[a-", False),
        ("/x[]]", "x]", False),
        ("/x[]]", "x]]", False),
        ("/x[!]", "xy", True),
        ("/x[c-a]", "xa", True),
        ("/x[c-a]", "xb", False),
        ("/a\\", "a", True),
        ("/a\\/b", "a/b", True),
    ],
)
def test_oracle_examples(pattern: str, path: str, expected: bool) -> None:
    assert gitlab_matches(pattern, path) is expected
    assert bool(co._pattern_regex(pattern).fullmatch("/" + path)) is expected


# --------------------------------------------------------------------------- properties

PATH_SEGMENTS = ["a", "b", "ab", ".x", "a.md", "b.md", ".md", "c.txt", "lib", "[ab]", "{a,b}"]
PATH_SEGMENTS += ["axb", "*", "bb"]
GLOB_SEGMENTS = ["*", "**", "?", "[ab]", "[!a]*", "*.md", "a*", "?b", "[a-b]?", "*b*", "\\*"]
GLOB_SEGMENTS += ["a?b", "a[!b]*", "**.md", "a**"]

path_segment = st.sampled_from(PATH_SEGMENTS)
pattern_segment = st.one_of(path_segment, st.sampled_from(GLOB_SEGMENTS))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 15)) == 0:
        return "*"
    body = "/".join(draw(st.lists(pattern_segment, min_size=1, max_size=4)))
    lead = draw(st.sampled_from(["", "", "/"]))
    tail = draw(st.sampled_from(["", "", "/"]))
    return lead + body + tail


@st.composite
def paths(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(path_segment, min_size=1, max_size=5)))
    return draw(st.sampled_from(["", "/"])) + path


def path_like(draw: st.DrawFn, pattern: str) -> str:
    """A path that matches ``pattern``, or nearly: so that multi-segment patterns match."""
    parts: list[str] = []
    if not pattern.startswith("/"):
        parts += draw(st.lists(path_segment, max_size=2))
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts += draw(st.lists(path_segment, max_size=2))
        elif segment in PATH_SEGMENTS:
            parts.append(segment)
        else:
            parts.append(draw(path_segment))
    if pattern.endswith("/") or not parts or draw(st.booleans()):
        parts += draw(st.lists(path_segment, min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:  # a near miss
        parts[draw(st.integers(0, len(parts) - 1))] = draw(path_segment)
    return "/".join(parts)


OWNERS = ["@u1", "@u2", "@g/sub", "x@y.z", "@@developer"]


@st.composite
def codeowners_texts(draw: st.DrawFn) -> str:
    lines: list[str] = []
    headers = ["", "[A]", "^[B] @u2", "[a][2]", "[C] @g/sub"]  # "[a]" merges into "[A]"
    for header in draw(st.lists(st.sampled_from(headers), min_size=1, max_size=4)):
        if header:
            lines.append(header)
        for _ in range(draw(st.integers(0, 6))):
            pattern = draw(patterns())
            if pattern.startswith("[") or pattern.startswith("#"):
                pattern = "/" + pattern  # keep it a pattern, not a header or a comment
            if draw(st.integers(0, 4)) == 0:
                lines.append("!" + pattern)
            else:
                written = draw(st.lists(st.sampled_from(OWNERS), max_size=2))
                lines.append(" ".join([pattern, *written]))
    return "\n".join(lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(codeowners_texts(), st.data())
def test_matcher_equals_reference(text: str, data: st.DataObject) -> None:
    parsed = parse(text)
    written = [e.pattern for s in parsed.sections for e in s.entries]
    many = data.draw(st.lists(paths(), min_size=1, max_size=10))
    for pattern in written:
        many += [path_like(data.draw, pattern) for _ in range(2)]
    result = parsed.owners_of_paths(many)
    for path in many:
        assert result[path] == reference_owners(parsed, path), (text, path)
    assert parsed.owners_of_paths(reversed(many)) == result  # and with warm caches


@settings(max_examples=300, deadline=None)
@given(st.lists(patterns(), min_size=1, max_size=6), st.data())
def test_reference_equals_gitlab_fnmatch(written: list[str], data: st.DataObject) -> None:
    for pattern in written:
        regex = co._pattern_regex(pattern)
        many = data.draw(st.lists(paths(), max_size=4))
        for path in [*many, path_like(data.draw, pattern), path_like(data.draw, pattern)]:
            expected = gitlab_matches(pattern, path)
            assert bool(regex.fullmatch(co._normalize_path(path))) is expected, (pattern, path)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.text(alphabet="a*?[]!^-/\\", min_size=1, max_size=7), max_size=6),
    st.lists(st.text(alphabet="ab/[]!-\\", min_size=1, max_size=6), min_size=1, max_size=10),
)
def test_odd_patterns_and_paths(written: list[str], many: list[str]) -> None:
    """Any short pattern, any short path: escapes, "//", "[!]", "\\/", reversed ranges..."""
    parsed = parse("\n".join(f"{pattern} @o{n}" for n, pattern in enumerate(written)))
    result = parsed.owners_of_paths(many)
    for path in many:
        assert result[path] == reference_owners(parsed, path), (written, path)
    for pattern in written:
        regex = co._pattern_regex(pattern)
        for path in many:
            expected = gitlab_matches(pattern, path)
            assert bool(regex.fullmatch(co._normalize_path(path))) is expected, (pattern, path)


_GLOB_ATOMS = st.sampled_from(["a", "b", "ab", "*", "**", "?", "[a-b]", "[!a]", "[^b]", "\\*", "."])


@settings(max_examples=500, deadline=None)
@given(st.lists(_GLOB_ATOMS, max_size=6), st.text(alphabet="ab.*", max_size=8))
def test_a_segment_glob_tested_in_python_agrees_with_its_regex(
    written: list[str], name: str
) -> None:
    # the test a glob gets before its regex is compiled (co._Lazy), on names where a run
    # between two "*" fits in several places (several "*", literals that repeat)
    [atoms] = co._parse_pattern("/" + "".join(written))
    assert isinstance(atoms, tuple)
    expected = re.fullmatch(co._segment_regex(atoms), name) is not None
    assert co._Glob(atoms)(name) == expected
