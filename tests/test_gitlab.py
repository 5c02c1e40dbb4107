"""The GitLab adapter against the in-process GitLab stand-in, over real HTTP.

python-gitlab runs in worker threads while the stand-in serves on the test's own loop,
so a call that blocked the loop would never be answered: every test here is also a
test that the adapter keeps off the loop (and one measures it outright).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator

import pytest

from bot.gitlab import (
    GitLab,
    GitLabError,
    GitLabForbidden,
    GitLabNotFound,
    GitLabUnavailable,
    GitLabUser,
    MergeRequestRef,
    Note,
    UserStatus,
    parse_mr_url,
)
from bot.sandbox.gitlab import GitLabStandIn, serve

TOKEN = "glpat-NeverShowThis-1234"
OTHER_TOKEN = "glpat-NorThisOne-5678"


@pytest.fixture
def standin() -> GitLabStandIn:
    s = GitLabStandIn(TOKEN)
    s.add_user("alice", name="Alice A", public_email="Alice@Example.com")
    s.add_user("bob", status={"availability": "busy", "emoji": "palm_tree", "message": "Away"})
    s.add_user("carol", public_email="carol@example.com")
    s.add_user("alicia", public_email="alice@example.com.evil")
    s.add_group("g", {"alice": 50, "carol": 30})
    s.add_group("g/sub", ["bob"])
    s.add_project("g/sub/p", members={"carol": 40})
    s.add_merge_request(
        "g/sub/p",
        author="alice",
        title="Add the thing",
        labels=["backend", "needs review"],
        reviewers=["bob", "carol"],
        target_branch="main",
    )
    s.add_merge_request("g/sub/p", author="carol", draft=True, title="WIP")
    return s


@pytest.fixture
async def url(standin: GitLabStandIn) -> AsyncIterator[str]:
    async with serve(standin) as base:
        yield base


@pytest.fixture
async def gl(url: str) -> AsyncIterator[GitLab]:
    client = GitLab(url, TOKEN, max_retries=2)
    yield client
    await client.close()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- parse_mr_url ----------------------------------------------------------------------

GITLAB = "https://gitlab.example.com"


@pytest.mark.parametrize(
    ("url", "gitlab_url", "expected"),
    [
        (f"{GITLAB}/g/sub/proj/-/merge_requests/12", GITLAB, ("g/sub/proj", 12)),
        (f"{GITLAB}/g/p/-/merge_requests/12/diffs", GITLAB, ("g/p", 12)),
        (f"{GITLAB}/g/p/-/merge_requests/12/commits?a=1#note_5", GITLAB, ("g/p", 12)),
        (f"{GITLAB}/g/p/-/merge_requests/12#note_5", GITLAB, ("g/p", 12)),
        (f"{GITLAB}/g/p/-/merge_requests/12?tab=pipelines", GITLAB, ("g/p", 12)),
        (f"{GITLAB}/g/p/-/merge_requests/12/", GITLAB, ("g/p", 12)),
        (f"{GITLAB}/g/p/-/merge_requests/12.diff", GITLAB, ("g/p", 12)),
        (f"{GITLAB}/g/p/merge_requests/7", GITLAB, ("g/p", 7)),  # legacy, no /-/
        (f"{GITLAB}/a/b/c/d.e_f-g/-/merge_requests/3", GITLAB, ("a/b/c/d.e_f-g", 3)),
        ("HTTPS://GitLab.Example.COM/g/p/-/merge_requests/3", GITLAB, ("g/p", 3)),
        ("https://gitlab.example.com:443/g/p/-/merge_requests/3", GITLAB, ("g/p", 3)),
        ("http://gitlab.example.com/g/p/-/merge_requests/3", GITLAB, ("g/p", 3)),
        (f"  <{GITLAB}/g/p/-/merge_requests/3>  ", GITLAB + "/", ("g/p", 3)),
        ("http://localhost:8080/g/p/-/merge_requests/1", "http://LOCALHOST:8080", ("g/p", 1)),
        (
            "https://example.com/gitlab/g/p/-/merge_requests/4",
            "https://example.com/gitlab",
            ("g/p", 4),
        ),
        (
            "https://example.com/gitlab/g/p/merge_requests/4/diffs",
            "https://example.com/gitlab/",
            ("g/p", 4),
        ),
    ],
)
def test_parse_mr_url_accepts(url: str, gitlab_url: str, expected: tuple[str, int]) -> None:
    assert parse_mr_url(url, gitlab_url) == MergeRequestRef(*expected)


ELSEWHERE = "that URL is not on the configured GitLab"


@pytest.mark.parametrize(
    ("url", "gitlab_url", "message"),
    [
        ("https://other.example.com/g/p/-/merge_requests/1", GITLAB, ELSEWHERE),
        ("https://gitlab.example.com:8443/g/p/-/merge_requests/1", GITLAB, ELSEWHERE),
        ("https://gitlab.example.com.evil/g/p/-/merge_requests/1", GITLAB, ELSEWHERE),
        ("https://example.com/g/p/-/merge_requests/1", "https://example.com/gitlab", ELSEWHERE),
        (
            "https://example.com/gitlabx/g/p/-/merge_requests/1",
            "https://example.com/gitlab",
            ELSEWHERE,
        ),
        (f"{GITLAB}/g/p/-/issues/3", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/p", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/p/-/merge_requests", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/p/-/merge_requests/new", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/p/-/merge_requests/12abc", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/p/-/merge_requests/0", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/p/-/merge_requests/1", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/-/merge_requests/1", GITLAB, "not a merge request URL"),
        (f"{GITLAB}/g/-/p/merge_requests/1", GITLAB, "not a merge request URL"),
        ("ftp://gitlab.example.com/g/p/-/merge_requests/1", GITLAB, "not a merge request URL"),
        ("gitlab.example.com/g/p/-/merge_requests/1", GITLAB, "not a merge request URL"),
        ("https://gitlab.example.com:nope/g/p/-/merge_requests/1", GITLAB, "not a merge"),
        ("https://[::1/g/p/-/merge_requests/1", GITLAB, "not a merge request URL"),
        ("", GITLAB, "not a merge request URL"),
        ("!12", GITLAB, "not a merge request URL"),
        ("hello\nworld " * 40, GITLAB, "not a merge request URL"),
    ],
)
def test_parse_mr_url_rejects(url: str, gitlab_url: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message) as caught:
        parse_mr_url(url, gitlab_url)
    text = str(caught.value)
    assert "\n" not in text and len(text) < 200


def test_parse_mr_url_names_the_configured_gitlab() -> None:
    with pytest.raises(ValueError) as caught:
        parse_mr_url("https://other.example.com/g/p/-/merge_requests/1", GITLAB)
    assert str(caught.value) == "that URL is not on the configured GitLab (gitlab.example.com)"
    with pytest.raises(ValueError) as caught:
        parse_mr_url("https://other/g/p/-/merge_requests/1", "https://h.example:8443/gitlab/")
    assert str(caught.value).endswith("(h.example:8443/gitlab)")


# --- reads -----------------------------------------------------------------------------


async def test_constructor_does_no_io(url: str, standin: GitLabStandIn) -> None:
    client = GitLab(url, TOKEN)
    unreachable = GitLab(f"http://127.0.0.1:{unused_port()}", TOKEN)
    assert standin.requests == []
    await client.close()
    await unreachable.close()


async def test_merge_request(gl: GitLab, url: str, standin: GitLabStandIn) -> None:
    info = await gl.merge_request(MergeRequestRef("G/Sub/P", 1))
    raw = standin.merge_request("g/sub/p", 1)
    assert info.project_id == raw["project_id"]
    assert info.project_path == "g/sub/p"  # GitLab's spelling, not the URL's
    assert (info.iid, info.id) == (1, raw["id"])
    assert info.title == "Add the thing"
    assert (info.author, info.author_id) == ("alice", raw["author"]["id"])
    assert info.labels == ("backend", "needs review")
    assert info.draft is False and info.state == "opened" and info.target_branch == "main"
    assert info.web_url == f"{url}/g/sub/p/-/merge_requests/1"
    assert info.reviewers == ("bob", "carol")
    assert info.reviewer_ids == tuple(r["id"] for r in raw["reviewers"])
    assert standin.requests == [("GET", "/api/v4/projects/G%2FSub%2FP/merge_requests/1")]

    draft = await gl.merge_request(MergeRequestRef(str(info.project_id), 2))  # by id
    assert draft.draft is True and draft.title == "Draft: WIP" and draft.reviewers == ()


async def test_changed_paths_across_pages_with_renames_and_deletes(
    gl: GitLab, standin: GitLabStandIn
) -> None:
    modified = [f"src/m{i:03}.py" for i in range(220)]
    mr = standin.add_merge_request(
        "g/sub/p",
        author="alice",
        changes=[
            *modified,
            {"old_path": "old/name.py", "new_path": "new/name.py", "renamed_file": True},
            {"new_path": "gone.py", "deleted_file": True},
            {"new_path": "added.py", "new_file": True},
            {"old_path": "src/m000.py", "new_path": "moved/m000.py", "renamed_file": True},
        ],
    )
    paths = await gl.changed_paths(mr["project_id"], mr["iid"])
    assert paths == [
        *modified,
        "new/name.py",
        "old/name.py",
        "gone.py",
        "added.py",
        "moved/m000.py",  # its old path was already listed: no duplicate
    ]
    pages = [path for _, path in standin.requests if path.split("?")[0].endswith("/diffs")]
    assert len(pages) == 3  # 224 files at 100 per page
    assert "per_page=100" in pages[0]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"docs/CODEOWNERS": "* @docs\n"}, ("docs/CODEOWNERS", "* @docs\n")),
        (
            {".gitlab/CODEOWNERS": "* @dotgitlab\n", "CODEOWNERS": "* @root\n"},
            ("CODEOWNERS", "* @root\n"),
        ),
        (
            {".gitlab/CODEOWNERS": "* @dotgitlab\n", "docs/CODEOWNERS": "* @docs\n"},
            ("docs/CODEOWNERS", "* @docs\n"),
        ),
        ({".gitlab/CODEOWNERS": "* @dotgitlab\n"}, (".gitlab/CODEOWNERS", "* @dotgitlab\n")),
        ({"README.md": "no owners here\n"}, None),
    ],
)
async def test_codeowners_lookup_order(
    gl: GitLab,
    standin: GitLabStandIn,
    files: dict[str, str],
    expected: tuple[str, str] | None,
) -> None:
    project = standin.add_project("g/owned", files={"main": files})
    assert await gl.codeowners_file(project["id"], "main") == expected


async def test_codeowners_on_another_ref_and_unreadable(gl: GitLab, standin: GitLabStandIn) -> None:
    project = standin.add_project(
        "g/branches", files={"main": {}, "release": {"CODEOWNERS": "* @rel\n"}}
    )
    assert await gl.codeowners_file(project["id"], "release") == ("CODEOWNERS", "* @rel\n")
    assert await gl.codeowners_file(project["id"], "main") is None

    secret = standin.add_project(
        "g/secret", files={"main": {"CODEOWNERS": "x"}}, repository_access=False
    )
    with pytest.raises(GitLabForbidden) as caught:
        await gl.codeowners_file(secret["id"], "main")
    assert caught.value.status == 403


async def test_user_status(gl: GitLab) -> None:
    assert await gl.user_status("bob") == UserStatus("busy", "palm_tree", "Away")
    assert await gl.user_status("alice") == UserStatus("not_set", None, None)
    bob = await gl.user("bob")
    assert bob is not None
    assert (await gl.user_status(bob.id)).availability == "busy"
    with pytest.raises(GitLabNotFound, match="404 User Not Found"):
        await gl.user_status("nobody")


async def test_user_status_needs_no_token(url: str) -> None:
    anonymous = GitLab(url, None)
    try:
        assert (await anonymous.user_status("bob")).availability == "busy"
    finally:
        await anonymous.close()


async def test_user(gl: GitLab, standin: GitLabStandIn) -> None:
    alice = await gl.user("ALICE")
    assert alice is not None
    assert alice == GitLabUser(
        id=standin.merge_request("g/sub/p", 1)["author"]["id"],
        username="alice",
        name="Alice A",
        state="active",
        public_email=None,  # the list endpoint's basic entity has no public_email
    )
    assert await gl.user("nobody") is None


async def test_user_by_email_keeps_only_an_exact_public_email(gl: GitLab) -> None:
    alice = await gl.user_by_email("alice@example.COM")
    assert alice is not None
    assert (alice.username, alice.public_email) == ("alice", "Alice@Example.com")
    assert await gl.user_by_email("lice@example.com") is None
    assert await gl.user_by_email("nobody@example.com") is None


async def test_user_by_email_rejects_fuzzy_search_hits(gl: GitLab, standin: GitLabStandIn) -> None:
    # A search that is not an email matches names: the hits are read and rejected.
    carol = await gl.user("carol")
    assert carol is not None
    assert await gl.user_by_email("carol") is None
    assert ("GET", f"/api/v4/users/{carol.id}") in standin.requests


async def test_group_members_across_pages(gl: GitLab, standin: GitLabStandIn) -> None:
    names = [f"member{i:03}" for i in range(120)]
    for name in names:
        standin.add_user(name)
    standin.add_group("big/team", names)
    members = await gl.group_members("big/team")
    assert [m.username for m in members] == names
    assert all(isinstance(m, GitLabUser) and m.state == "active" for m in members)
    assert ("GET", "/api/v4/groups/big%2Fteam/members?per_page=100") in standin.requests
    assert [m.username for m in await gl.group_members("g/sub")] == ["bob"]
    with pytest.raises(GitLabNotFound, match="404 Group Not Found"):
        await gl.group_members("nope")


async def test_project_members_with_access_levels(gl: GitLab, standin: GitLabStandIn) -> None:
    info = await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    members = await gl.project_members(info.project_id)
    assert sorted((user.username, level) for user, level in members) == [
        ("alice", 50),
        ("bob", 30),
        ("carol", 40),
    ]


async def test_gitlab_under_a_path_prefix() -> None:
    standin = GitLabStandIn(TOKEN, relative_url_root="/gitlab")
    standin.add_user("alice")
    standin.add_project("g/p")
    standin.add_merge_request("g/p", author="alice", changes=[f"f{i}" for i in range(150)])
    async with serve(standin) as url:
        client = GitLab(url + "/", TOKEN)
        try:
            ref = parse_mr_url(f"{url}/g/p/-/merge_requests/1#note_1", url)
            info = await client.merge_request(ref)
            assert len(await client.changed_paths(info.project_id, info.iid)) == 150
        finally:
            await client.close()
    assert info.web_url == f"{url}/g/p/-/merge_requests/1"


async def test_the_proxy_of_the_environment_is_read_once_and_no_proxy_honoured(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab is reached through ``HTTP_PROXY`` (here the stand-in itself, which answers a
    request target in absolute form as a proxy would), unless ``NO_PROXY`` names its
    host; the environment is read when the adapter is built, not on each call."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    proxied = GitLab("http://gitlab.invalid", TOKEN, max_retries=0)
    monkeypatch.setenv("NO_PROXY", "gitlab.invalid")
    direct = GitLab("http://gitlab.invalid", TOKEN, max_retries=0)
    monkeypatch.delenv("HTTP_PROXY")  # after start-up: changes nothing
    try:
        assert (await proxied.user_status("bob")).availability == "busy"
        with pytest.raises(GitLabUnavailable):  # no proxy: the name does not resolve
            await direct.user_status("bob")
    finally:
        await proxied.close()
        await direct.close()


# --- failures --------------------------------------------------------------------------


async def test_not_found(gl: GitLab) -> None:
    with pytest.raises(GitLabNotFound) as caught:
        await gl.merge_request(MergeRequestRef("g/nope", 1))
    assert caught.value.status == 404
    assert str(caught.value) == "merge request g/nope!1: GitLab answered 404 Project Not Found"
    with pytest.raises(GitLabNotFound, match="404 Not found"):
        await gl.merge_request(MergeRequestRef("g/sub/p", 99))


async def test_bad_token_is_forbidden(url: str) -> None:
    client = GitLab(url, OTHER_TOKEN)
    try:
        with pytest.raises(GitLabForbidden) as caught:
            await client.merge_request(MergeRequestRef("g/sub/p", 1))
    finally:
        await client.close()
    assert caught.value.status == 401
    assert "401 Unauthorized" in str(caught.value)


async def test_a_transient_error_is_retried(gl: GitLab, standin: GitLabStandIn) -> None:
    standin.fail_next(r"/merge_requests/1$", 502)
    info = await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    assert info.iid == 1
    assert len(standin.requests) == 2


async def test_rate_limit_is_retried_after_the_servers_delay(
    gl: GitLab, standin: GitLabStandIn
) -> None:
    standin.fail_next(r"/users\?", 429, retry_after=0)
    assert await gl.user("bob") is not None
    assert len(standin.requests) == 2


async def test_a_failing_page_is_retried_mid_list(gl: GitLab, standin: GitLabStandIn) -> None:
    standin.add_merge_request("g/sub/p", author="alice", changes=[f"f{i}" for i in range(150)])
    standin.fail_next(r"/merge_requests/3/diffs\?.*\bpage=2\b", 503, times=2)
    info = await gl.merge_request(MergeRequestRef("g/sub/p", 3))
    paths = await gl.changed_paths(info.project_id, 3)
    assert len(paths) == 150
    pages = [path for _, path in standin.requests if "/diffs" in path]
    assert len(pages) == 4  # page 1, page 2 failing twice, page 2 again


async def test_persistent_unavailability(gl: GitLab, standin: GitLabStandIn) -> None:
    standin.fail_next(r"/merge_requests/1$", 503, times=10)
    started = time.monotonic()
    with pytest.raises(GitLabUnavailable) as caught:
        await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    assert time.monotonic() - started < 5
    assert caught.value.status == 503
    assert str(caught.value) == (
        "merge request g/sub/p!1: GitLab answered 503 Service Unavailable (after 2 retries)"
    )
    assert len(standin.requests) == 3  # the first try and two retries


async def test_refused_connection_is_unavailable() -> None:
    client = GitLab(f"http://127.0.0.1:{unused_port()}", TOKEN, max_retries=1)
    try:
        with pytest.raises(GitLabUnavailable) as caught:
            await client.user("bob")
    finally:
        await client.close()
    assert "is unreachable: Connection refused" in str(caught.value)
    assert caught.value.status is None


async def test_timeout_is_unavailable(url: str, standin: GitLabStandIn) -> None:
    client = GitLab(url, TOKEN, timeout=0.1, max_retries=0)
    standin.delay_next(r"/status$", 0.5)
    try:
        with pytest.raises(GitLabUnavailable, match="is unreachable: timed out"):
            await client.user_status("bob")
    finally:
        await client.close()


async def test_an_unexpected_answer_is_a_gitlab_error(gl: GitLab, standin: GitLabStandIn) -> None:
    standin.fail_next(r"/merge_requests/1$", 418)
    with pytest.raises(GitLabError) as caught:
        await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    assert type(caught.value) is GitLabError
    assert caught.value.status == 418


async def test_the_token_never_shows(
    url: str, standin: GitLabStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    standin.fail_next(r"/g%2Fsub%2Fp/merge_requests/1$", 503, times=10)
    standin.delay_next(r"/status$", 0.5)
    wrong = GitLab(url, OTHER_TOKEN, max_retries=0)
    right = GitLab(url, TOKEN, max_retries=1)
    slow = GitLab(url, TOKEN, timeout=0.1, max_retries=0)
    nowhere = GitLab(f"http://127.0.0.1:{unused_port()}", TOKEN, max_retries=0)
    attempts = [
        wrong.user("bob"),
        right.merge_request(MergeRequestRef("g/sub/p", 1)),
        right.merge_request(MergeRequestRef("g/none", 1)),
        slow.user_status("bob"),
        nowhere.user("bob"),
    ]
    for attempt in attempts:
        with pytest.raises(GitLabError) as caught:
            await attempt
        errors.append(caught.value)
    for client in (wrong, right, slow, nowhere):
        await client.close()
    assert [type(e) for e in errors] == [
        GitLabForbidden,
        GitLabUnavailable,
        GitLabNotFound,
        GitLabUnavailable,
        GitLabUnavailable,
    ]
    for error in errors:
        text = "".join(traceback.format_exception(error)) + repr(error)
        assert TOKEN not in text and OTHER_TOKEN not in text
        assert "\n" not in str(error)
    assert TOKEN not in caplog.text and OTHER_TOKEN not in caplog.text
    assert "GitLab answered 503" in caplog.text  # unavailability is logged


# --- off the loop ----------------------------------------------------------------------


async def test_the_loop_stays_responsive_during_a_slow_answer(
    gl: GitLab, standin: GitLabStandIn
) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    standin.delay_next(r"/merge_requests/1$", 0.3)
    started = time.monotonic()
    try:
        await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    finally:
        stop.set()
        await ticker
    assert time.monotonic() - started >= 0.3
    assert ticks >= 10


async def test_calls_run_concurrently(gl: GitLab, standin: GitLabStandIn) -> None:
    standin.delay_next(r"/merge_requests/1$", 0.3, times=3)
    started = time.monotonic()
    infos = await asyncio.gather(
        *(gl.merge_request(MergeRequestRef("g/sub/p", 1)) for _ in range(3))
    )
    assert [i.iid for i in infos] == [1, 1, 1]
    assert time.monotonic() - started < 0.8  # not 3 x 0.3 s one after the other


# --- the bot's account, notes, reviewers ----------------------------------------------


async def test_current_user_is_read_once(gl: GitLab, standin: GitLabStandIn) -> None:
    me = await gl.current_user()
    assert (me.id, me.username) == (standin.bot["id"], "roulette-bot")
    assert await gl.current_user() is me
    assert standin.requests == [("GET", "/api/v4/user")]


async def test_post_note(gl: GitLab, standin: GitLabStandIn) -> None:
    info = await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    note = await gl.post_note(info.project_id, 1, "Picked @bob :game_die:")
    assert isinstance(note, Note)
    assert (note.body, note.author, note.system) == (
        "Picked @bob :game_die:",
        "roulette-bot",
        False,
    )
    assert note.created_at.endswith("Z")
    stored = standin.notes("g/sub/p", 1)
    assert [(n["id"], n["body"]) for n in stored] == [(note.id, note.body)]
    assert standin.writes[-1][2] == {"body": "Picked @bob :game_die:"}


@pytest.mark.parametrize("after", [False, True], ids=["lost-before", "lost-after-storing"])
async def test_post_note_is_not_retried_into_a_duplicate(
    gl: GitLab, standin: GitLabStandIn, after: bool
) -> None:
    info = await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    standin.fail_next(r"/notes$", 502, method="POST", after=after)
    with pytest.raises(GitLabUnavailable) as caught:
        await gl.post_note(info.project_id, 1, "Picked @bob")
    assert str(caught.value) == (
        f"note on merge request {info.project_id}!1: GitLab answered 502 Bad Gateway (not retried)"
    )
    posts = [path for method, path in standin.requests if method == "POST"]
    assert len(posts) == 1  # python-gitlab would have retried max_retries times
    assert len(standin.notes("g/sub/p", 1)) == (1 if after else 0)


async def test_post_note_is_not_retried_after_a_timeout(url: str, standin: GitLabStandIn) -> None:
    client = GitLab(url, TOKEN, timeout=0.2, max_retries=3)
    standin.delay_next(r"/notes$", 0.5, method="POST", after=True)  # stored, answered late
    try:
        with pytest.raises(GitLabUnavailable, match="timed out"):
            await client.post_note(standin.project("g/sub/p")["id"], 1, "slow")
    finally:
        await client.close()
    assert [n["body"] for n in standin.notes("g/sub/p", 1)] == ["slow"]
    assert sum(method == "POST" for method, _ in standin.requests) == 1


async def test_post_note_waits_out_a_rate_limit(gl: GitLab, standin: GitLabStandIn) -> None:
    # A 429 is GitLab's rate limiter refusing before doing anything: safe to retry.
    standin.fail_next(r"/notes$", 429, method="POST", retry_after=0)
    project_id = standin.project("g/sub/p")["id"]
    await gl.post_note(project_id, 1, "once")
    assert [n["body"] for n in standin.notes("g/sub/p", 1)] == ["once"]
    assert sum(method == "POST" for method, _ in standin.requests) == 2


async def test_post_note_errors(gl: GitLab, standin: GitLabStandIn) -> None:
    project_id = standin.project("g/sub/p")["id"]
    with pytest.raises(GitLabError) as caught:
        await gl.post_note(project_id, 1, "   ")
    assert type(caught.value) is GitLabError and caught.value.status == 400
    assert "can't be blank" in str(caught.value)
    with pytest.raises(GitLabNotFound, match="404 Not found"):
        await gl.post_note(project_id, 99, "hello")


async def test_recent_notes_newest_first_one_page(gl: GitLab, standin: GitLabStandIn) -> None:
    for i in range(6):
        standin.add_note("g/sub/p", 1, "alice", f"comment {i}")
    standin.approve("g/sub/p", 1, "carol")  # a system note
    project_id = standin.project("g/sub/p")["id"]
    notes = await gl.recent_notes(project_id, 1, limit=3)
    assert [(n.body, n.author, n.system) for n in notes] == [
        ("approved this merge request", "carol", True),
        ("comment 5", "alice", False),
        ("comment 4", "alice", False),
    ]
    assert standin.requests == [
        (
            "GET",
            f"/api/v4/projects/{project_id}/merge_requests/1/notes"
            "?sort=desc&order_by=created_at&per_page=3",
        )
    ]
    assert len(await gl.recent_notes(project_id, 1)) == 7
    assert await gl.recent_notes(project_id, 2) == []


async def test_set_reviewers(gl: GitLab, standin: GitLabStandIn) -> None:
    info = await gl.merge_request(MergeRequestRef("g/sub/p", 1))
    alice, carol = standin.user("alice")["id"], standin.user("carol")["id"]
    updated = await gl.set_reviewers(info.project_id, 1, [carol, alice, 99_999])
    assert updated.reviewers == ("carol", "alice")  # the unknown id: dropped by GitLab
    assert updated.reviewer_ids == (carol, alice)
    assert updated.project_path == "g/sub/p" and updated.title == "Add the thing"
    assert standin.writes[-1][2] == {"reviewer_ids": [carol, alice, 99_999]}
    cleared = await gl.set_reviewers(info.project_id, 1, [])
    assert cleared.reviewers == () and cleared.reviewer_ids == ()
    assert standin.merge_request("g/sub/p", 1)["reviewers"] == []


async def test_set_reviewers_is_retried_as_it_is_idempotent(
    gl: GitLab, standin: GitLabStandIn
) -> None:
    project_id = standin.project("g/sub/p")["id"]
    carol = standin.user("carol")["id"]
    standin.fail_next(r"/merge_requests/1$", 502, method="PUT", after=True)
    updated = await gl.set_reviewers(project_id, 1, [carol])
    assert updated.reviewers == ("carol",)
    assert sum(method == "PUT" for method, _ in standin.requests) == 2
    # The second PUT found carol already there: one change, one system note.
    assert [n["body"] for n in standin.notes("g/sub/p", 1)] == ["removed review request for @bob"]


async def test_set_reviewers_errors(gl: GitLab, standin: GitLabStandIn) -> None:
    with pytest.raises(GitLabNotFound, match="404 Not found"):
        await gl.set_reviewers(standin.project("g/sub/p")["id"], 99, [1])
    with pytest.raises(GitLabNotFound, match="404 Project Not Found"):
        await gl.set_reviewers(99_999, 1, [1])


async def test_the_token_never_shows_in_write_errors(
    url: str, standin: GitLabStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    project_id = standin.project("g/sub/p")["id"]
    wrong = GitLab(url, OTHER_TOKEN, max_retries=0)
    right = GitLab(url, TOKEN, max_retries=1)
    attempts = [
        wrong.post_note(project_id, 1, "x"),
        wrong.set_reviewers(project_id, 1, []),
        wrong.current_user(),
        right.post_note(project_id, 1, "x"),
        right.set_reviewers(project_id, 1, []),
    ]
    errors = []
    for number, attempt in enumerate(attempts):
        if number == 3:  # the right token now meets a failing GitLab
            standin.fail_next(r"/notes$", 503, method="POST")
            standin.fail_next(r"/merge_requests/1$", 503, times=10, method="PUT")
        with pytest.raises(GitLabError) as caught:
            await attempt
        errors.append(caught.value)
    for client in (wrong, right):
        await client.close()
    assert [type(e) for e in errors] == [
        GitLabForbidden,
        GitLabForbidden,
        GitLabForbidden,
        GitLabUnavailable,
        GitLabUnavailable,
    ]
    assert str(errors[-1]).endswith("503 Service Unavailable (after 1 retry)")
    for error in errors:
        text = "".join(traceback.format_exception(error)) + repr(error)
        assert TOKEN not in text and OTHER_TOKEN not in text
        assert "\n" not in str(error)
    assert TOKEN not in caplog.text and OTHER_TOKEN not in caplog.text
    assert standin.notes("g/sub/p", 1) == []
