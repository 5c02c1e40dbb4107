"""The GitLab stand-in is faithful: python-gitlab itself drives it, unchanged.

python-gitlab is blocking, so each scenario runs in a worker thread while the stand-in
serves on the test's loop; each also records the warnings python-gitlab emits (it warns
when pagination links point at another base URL).
"""

from __future__ import annotations

import asyncio
import functools
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
import gitlab
import pytest
from gitlab import exceptions as gle

from bot.sandbox.gitlab import GitLabStandIn, serve

T = TypeVar("T")
TOKEN = "standin-token-1234"


@pytest.fixture
def standin() -> GitLabStandIn:
    s = GitLabStandIn(TOKEN)
    s.add_user("alice", name="Alice A", public_email="alice@example.com")
    s.add_user("bob", status={"availability": "busy", "emoji": "palm_tree", "message": "Away"})
    s.add_user("carol")
    s.add_group("g", {"alice": 50, "carol": 30})
    s.add_group("g/sub", ["bob"])
    s.add_project(
        "g/sub/p",
        members={"carol": 40},
        files={"main": {".gitlab/CODEOWNERS": "* @alice\n", "README.md": "hi\n"}},
    )
    s.add_merge_request(
        "g/sub/p",
        author="alice",
        title="Add the thing",
        labels=["backend", "needs review"],
        reviewers=["bob"],
        assignees=["alice"],
        changes=[f"src/file_{i:02}.py" for i in range(45)],
    )
    s.add_merge_request("g/sub/p", author="carol", draft=True, title="WIP thing")
    return s


@pytest.fixture
async def url(standin: GitLabStandIn) -> AsyncIterator[str]:
    async with serve(standin) as base:
        yield base


async def in_thread(call: Callable[[], T]) -> tuple[T, list[str]]:
    """Run a blocking python-gitlab scenario off the loop; return it with its warnings."""

    def run() -> tuple[T, list[str]]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        return result, [str(w.message) for w in caught]

    return await asyncio.to_thread(run)


def client(url: str, token: str | None = TOKEN, **kwargs: Any) -> gitlab.Gitlab:
    return gitlab.Gitlab(url, private_token=token, **kwargs)


async def test_project_by_url_encoded_path(url: str, standin: GitLabStandIn) -> None:
    def scenario() -> Any:
        with client(url) as gl:
            return gl.projects.get("g/sub/p")

    project, caught = await in_thread(scenario)
    assert caught == []
    assert project.path_with_namespace == "g/sub/p"
    assert project.default_branch == "main"
    assert project.namespace["full_path"] == "g/sub"
    assert project.web_url == f"{url}/g/sub/p"
    assert standin.requests == [("GET", "/api/v4/projects/g%2Fsub%2Fp")]


async def test_project_lookup_is_case_insensitive_and_by_id(url: str) -> None:
    def scenario() -> tuple[int, int]:
        with client(url) as gl:
            by_path = gl.projects.get("G/Sub/P")
            return by_path.id, gl.projects.get(by_path.id).id

    (by_path, by_id), _ = await in_thread(scenario)
    assert by_path == by_id


async def test_merge_request_fields(url: str) -> None:
    def scenario() -> tuple[Any, Any]:
        with client(url) as gl:
            project = gl.projects.get("g/sub/p")
            return project.mergerequests.get(1), project.mergerequests.get(2)

    (mr, draft), caught = await in_thread(scenario)
    assert caught == []
    assert mr.iid == 1 and isinstance(mr.id, int) and mr.id != mr.iid
    assert mr.title == "Add the thing"
    assert mr.author["username"] == "alice" and isinstance(mr.author["id"], int)
    assert [r["username"] for r in mr.reviewers] == ["bob"]
    assert [a["username"] for a in mr.assignees] == ["alice"]
    assert mr.labels == ["backend", "needs review"]  # strings in REST, not objects
    assert mr.draft is False and mr.state == "opened"
    assert mr.target_branch == "main" and mr.source_branch
    assert mr.web_url == f"{url}/g/sub/p/-/merge_requests/1"
    assert len(mr.sha) == 40 and mr.diff_refs["head_sha"] == mr.sha
    assert mr.detailed_merge_status == "mergeable"
    assert mr.references["full"] == "g/sub/p!1"
    assert mr.project_id == mr.target_project_id
    assert draft.draft is True
    assert draft.title == "Draft: WIP thing"
    assert draft.detailed_merge_status == "draft_status"


async def test_diffs_across_pages_follow_the_link_header(url: str, standin: GitLabStandIn) -> None:
    def scenario() -> Any:
        with client(url) as gl:
            project_id = gl.projects.get("g/sub/p").id
            return gl.http_list(f"/projects/{project_id}/merge_requests/1/diffs", get_all=True)

    diffs, caught = await in_thread(scenario)
    assert caught == []  # python-gitlab saw links on its own base URL
    assert [d["new_path"] for d in diffs] == [f"src/file_{i:02}.py" for i in range(45)]
    assert set(diffs[0]) >= {
        "old_path",
        "new_path",
        "a_mode",
        "b_mode",
        "diff",
        "new_file",
        "renamed_file",
        "deleted_file",
        "generated_file",
    }
    pages = [path for _, path in standin.requests if "/diffs" in path]
    assert len(pages) == 3
    assert "page=2" in pages[1] and "page=3" in pages[2]


async def test_raw_file(url: str, standin: GitLabStandIn) -> None:
    def scenario() -> bytes:
        with client(url) as gl:
            project = gl.projects.get("g/sub/p", lazy=True)
            content: bytes = project.files.raw(file_path=".gitlab/CODEOWNERS", ref="main")
            return content

    content, _ = await in_thread(scenario)
    assert content == b"* @alice\n"
    assert standin.requests[-1] == (
        "GET",
        "/api/v4/projects/g%2Fsub%2Fp/repository/files/.gitlab%2FCODEOWNERS/raw?ref=main",
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda gl: gl.projects.get("g/nope"), "404 Project Not Found"),
        (lambda gl: gl.projects.get("g/sub/p").mergerequests.get(99), "404 Not found"),
        (
            lambda gl: gl.projects.get("g/sub/p", lazy=True).files.raw(
                file_path="CODEOWNERS", ref="main"
            ),
            "404 File Not Found",
        ),
        (
            lambda gl: gl.projects.get("g/sub/p", lazy=True).files.raw(
                file_path="README.md", ref="no-such-branch"
            ),
            "404 Commit Not Found",
        ),
        (lambda gl: gl.groups.get("nope"), "404 Group Not Found"),
        (lambda gl: gl.users.get(999), "404 User Not Found"),
    ],
)
async def test_not_found_is_a_get_error_with_gitlabs_message(
    url: str, call: Callable[[gitlab.Gitlab], Any], message: str
) -> None:
    def scenario() -> gle.GitlabGetError:
        with client(url) as gl, pytest.raises(gle.GitlabGetError) as caught:
            call(gl)
        return caught.value

    error, _ = await in_thread(scenario)
    assert error.response_code == 404
    assert error.error_message == message


async def test_wrong_or_missing_token_is_an_authentication_error(url: str) -> None:
    def scenario(token: str | None) -> gle.GitlabAuthenticationError:
        with client(url, token) as gl, pytest.raises(gle.GitlabAuthenticationError) as caught:
            gl.projects.get("g/sub/p")
        return caught.value

    for token in ("wrong-token", None):
        error, _ = await in_thread(functools.partial(scenario, token))
        assert error.response_code == 401
        assert error.error_message == "401 Unauthorized"


async def test_bearer_token_is_accepted(url: str) -> None:
    def scenario() -> str:
        with gitlab.Gitlab(url, oauth_token=TOKEN) as gl:
            return str(gl.projects.get("g/sub/p").path)

    path, _ = await in_thread(scenario)
    assert path == "p"


async def test_users_list_by_username(url: str) -> None:
    def scenario() -> tuple[list[Any], list[Any]]:
        with client(url) as gl:
            return gl.users.list(username="Bob"), gl.users.list(username="nobody")

    (found, missing), caught = await in_thread(scenario)
    assert caught == []
    assert [(u.username, u.name, u.state) for u in found] == [("bob", "Bob", "active")]
    assert missing == []


async def test_users_search_by_email_is_exact_and_single_user_has_public_email(
    url: str,
) -> None:
    def scenario() -> tuple[list[Any], list[Any], Any]:
        with client(url) as gl:
            exact = gl.users.list(search="ALICE@example.com")
            partial = gl.users.list(search="lice@example")
            return exact, partial, gl.users.get(exact[0].id)

    (exact, partial, alice), _ = await in_thread(scenario)
    assert [u.username for u in exact] == ["alice"]
    assert not hasattr(exact[0], "public_email")  # the basic entity, as for regular users
    assert partial == []
    assert alice.public_email == "alice@example.com"


async def test_user_status_by_id_and_username_without_auth(url: str) -> None:
    def scenario() -> tuple[Any, Any]:
        with client(url, None) as gl:
            busy = gl.users.get(2, lazy=True).status.get()
            unset = gl.users.get("carol", lazy=True).status.get()
            return busy, unset

    (busy, unset), _ = await in_thread(scenario)
    assert busy.availability == "busy"
    assert busy.emoji == "palm_tree"
    assert busy.message == "Away"
    assert busy.message_html.endswith("Away</p>")
    assert unset.availability is None and unset.message is None


async def test_group_members_are_direct_only(url: str) -> None:
    def scenario() -> list[Any]:
        with client(url) as gl:
            return gl.groups.get("g/sub", lazy=True).members.list(get_all=True)

    members, _ = await in_thread(scenario)
    assert [(m.username, m.access_level) for m in members] == [("bob", 30)]


async def test_project_members_all_include_inherited_with_highest_level(url: str) -> None:
    def scenario() -> list[Any]:
        with client(url) as gl:
            return gl.projects.get("g/sub/p").members_all.list(get_all=True)

    members, _ = await in_thread(scenario)
    assert sorted((m.username, m.access_level) for m in members) == [
        ("alice", 50),
        ("bob", 30),
        ("carol", 40),  # Developer in g, Maintainer on the project: the higher wins
    ]


async def test_transient_errors_are_retried_by_python_gitlab(
    url: str, standin: GitLabStandIn
) -> None:
    standin.fail_next(r"/projects/g%2Fsub%2Fp$", 502)
    standin.fail_next(r"/projects/g%2Fsub%2Fp$", 429, retry_after=0)

    def scenario() -> str:
        with client(url, retry_transient_errors=True) as gl:
            return str(gl.projects.get("g/sub/p", max_retries=3).path)

    path, _ = await in_thread(scenario)
    assert path == "p"
    assert len(standin.requests) == 3


async def test_pagination_headers_use_the_request_host(standin: GitLabStandIn) -> None:
    for i in range(130):
        standin.add_user(f"user{i:03}")
    async with serve(standin) as base, aiohttp.ClientSession() as http:
        headers = {"PRIVATE-TOKEN": TOKEN, "Host": "gitlab.example.com:8080"}
        async with http.get(f"{base}/api/v4/users?page=2&per_page=50", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "application/json"
            body = await r.json()
            got = {k: r.headers[k] for k in ("X-Page", "X-Per-Page", "X-Total", "X-Total-Pages")}
            assert got == {
                "X-Page": "2",
                "X-Per-Page": "50",
                "X-Total": "134",  # 3 + 130, and the token's own (bot) user
                "X-Total-Pages": "3",
            }
            assert (r.headers["X-Next-Page"], r.headers["X-Prev-Page"]) == ("3", "1")
            links = _links(r)
        assert len(body) == 50
        prefix = "http://gitlab.example.com:8080/api/v4/users?"
        assert links == {
            "prev": prefix + "page=1&per_page=50",
            "next": prefix + "page=3&per_page=50",
            "first": prefix + "page=1&per_page=50",
            "last": prefix + "page=3&per_page=50",
        }
        async with http.get(f"{base}/api/v4/users?per_page=500", headers=headers) as r:
            assert r.headers["X-Per-Page"] == "100"  # GitLab's maximum
            assert r.headers["X-Prev-Page"] == ""
        async with http.get(f"{base}/api/v4/users?page=3&per_page=100", headers=headers) as r:
            assert r.headers["X-Next-Page"] == "" and "next" not in _links(r)
            assert len(await r.json()) == 0


def _links(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {str(rel): str(link["url"]) for rel, link in response.links.items()}


async def test_unknown_route_and_method(url: str) -> None:
    async with aiohttp.ClientSession(headers={"PRIVATE-TOKEN": TOKEN}) as http:
        async with http.get(f"{url}/api/v4/nothing/here") as r:
            assert r.status == 404 and await r.json() == {"error": "404 Not Found"}
        async with http.delete(f"{url}/api/v4/projects/1") as r:
            assert r.status == 405


async def test_forbidden_repository(standin: GitLabStandIn) -> None:
    standin.add_project("g/secret", repository_access=False, files={"main": {"CODEOWNERS": ""}})
    async with serve(standin) as url:

        def scenario() -> gle.GitlabGetError:
            with client(url) as gl, pytest.raises(gle.GitlabGetError) as caught:
                gl.projects.get("g/secret", lazy=True).files.raw(file_path="CODEOWNERS")
            return caught.value

        error, _ = await in_thread(scenario)
    assert (error.response_code, error.error_message) == (403, "403 Forbidden")


async def test_relative_url_root(standin: GitLabStandIn) -> None:
    prefixed = GitLabStandIn(TOKEN, relative_url_root="/gitlab")
    prefixed.add_user("alice")
    prefixed.add_project("g/p")
    prefixed.add_merge_request("g/p", author="alice", changes=[f"f{i}" for i in range(30)])
    async with serve(prefixed) as url:
        assert url.endswith("/gitlab")

        def scenario() -> tuple[Any, list[Any]]:
            with client(url) as gl:
                mr = gl.projects.get("g/p").mergerequests.get(1)
                diffs = gl.http_list(
                    f"/projects/{mr.project_id}/merge_requests/1/diffs", get_all=True
                )
                return mr, list(diffs)

        (mr, diffs), caught = await in_thread(scenario)
    assert caught == []
    assert mr.web_url == f"{url}/g/p/-/merge_requests/1"
    assert len(diffs) == 30
    assert all(path.startswith("/gitlab/api/v4/") for _, path in prefixed.requests)


def test_model_api_validates() -> None:
    s = GitLabStandIn()
    s.add_user("alice")
    with pytest.raises(ValueError, match="already exists"):
        s.add_user("Alice")
    with pytest.raises(ValueError, match="namespace/project"):
        s.add_project("flat")
    with pytest.raises(ValueError, match="no project"):
        s.add_merge_request("g/p", author="alice")
    s.add_project("g/p")
    with pytest.raises(ValueError, match="no user"):
        s.add_merge_request("g/p", author="nobody")
    mr = s.add_merge_request(
        "g/p",
        author="alice",
        changes=[
            {"old_path": "a.py", "new_path": "b.py", "renamed_file": True},
            {"new_path": "gone.py", "deleted_file": True},
            {"new_path": "new.py", "new_file": True},
        ],
    )
    assert mr["changes_count"] == "3"
    assert s.merge_request("g/p", mr["iid"])["id"] == mr["id"]


# --- the token's user, notes, reviewers, approvals ---------------------------------------

NOTE_KEYS = {
    "id",
    "type",
    "body",
    "attachment",
    "author",
    "created_at",
    "updated_at",
    "system",
    "noteable_id",
    "noteable_type",
    "project_id",
    "noteable_iid",
    "resolvable",
    "confidential",
    "internal",
}


async def test_current_user_is_the_tokens_bot(url: str, standin: GitLabStandIn) -> None:
    def scenario() -> Any:
        with client(url) as gl:
            gl.auth()
            return gl.user

    me, caught = await in_thread(scenario)
    assert caught == []  # web_url matches the client's URL: no misconfiguration warning
    assert (me.username, me.bot) == ("roulette-bot", True)
    assert me.id == standin.bot["id"] and me.email == "roulette-bot@127.0.0.1"
    assert standin.requests == [("GET", "/api/v4/user")]
    # The bot's id is its own: users added later keep theirs (alice 1, bob 2...).
    assert standin.user("alice")["id"] == 1 and standin.add_user("dave")["id"] != me.id

    def anonymous() -> gle.GitlabAuthenticationError:
        with client(url, None) as gl, pytest.raises(gle.GitlabAuthenticationError) as e:
            gl.auth()
        return e.value

    error, _ = await in_thread(anonymous)
    assert error.response_code == 401


async def test_notes_create_and_list(url: str, standin: GitLabStandIn) -> None:
    standin.add_note("g/sub/p", 1, "alice", "first")
    standin.add_note("g/sub/p", 1, "bob", "second")

    def scenario() -> tuple[Any, Any, list[Any], list[Any], list[Any], list[Any]]:
        with client(url) as gl:
            mr = gl.projects.get("g/sub/p", lazy=True).mergerequests.get(1)
            created = mr.notes.create({"body": "@alice please review"})
            return (
                mr,
                created,
                mr.notes.list(get_all=True),  # GitLab's default: newest first
                mr.notes.list(sort="asc", order_by="created_at", get_all=True),
                mr.notes.list(sort="desc", per_page=2, page=1),
                mr.notes.list(sort="asc", per_page=2, get_all=True),
            )

    (mr, created, default, ascending, first_page, paged), caught = await in_thread(scenario)
    assert caught == []
    assert set(created.attributes) >= NOTE_KEYS
    assert created.body == "@alice please review"
    assert created.author["username"] == "roulette-bot"
    assert created.system is False and created.type is None
    assert created.noteable_id == mr.id != mr.iid  # the MR's global id
    assert (created.noteable_type, created.noteable_iid) == ("MergeRequest", 1)
    assert created.resolvable is False and created.internal is False
    # the MR's project_id, not the path it was read by
    assert ("POST", f"/api/v4/projects/{mr.project_id}/merge_requests/1/notes") in standin.requests
    bodies = ["first", "second", "@alice please review"]
    assert [n.body for n in ascending] == bodies
    assert [n.body for n in default] == bodies[::-1]
    assert [n.body for n in first_page] == bodies[::-1][:2]
    assert [n.body for n in paged] == bodies
    assert standin.notes("g/sub/p", 1)[-1]["id"] == created.id
    assert mr.user_notes_count == 2  # read before the bot's note


async def test_note_errors(url: str, standin: GitLabStandIn) -> None:
    path = "/projects/g%2Fsub%2Fp/merge_requests/1/notes"

    def scenario() -> list[tuple[int | None, Any]]:
        errors = []
        with client(url) as gl:
            calls: list[Callable[[], Any]] = [
                lambda: gl.http_post(path, post_data={}),
                lambda: gl.http_post(path, post_data={"body": "   "}),
                lambda: gl.http_post(path.replace("/1/", "/99/"), post_data={"body": "x"}),
                lambda: gl.http_get(path, query_data={"sort": "sideways"}),
                lambda: gl.http_get(path, query_data={"order_by": "id"}),
            ]
            for call in calls:
                with pytest.raises(gle.GitlabHttpError) as caught:
                    call()
                errors.append((caught.value.response_code, caught.value.error_message))
        return errors

    errors, _ = await in_thread(scenario)
    assert errors == [
        (400, "body is missing"),  # Grape's {"error": ...}
        (400, '400 Bad request - Note {:note=>["can\'t be blank"]}'),
        (404, "404 Not found"),
        (400, "sort does not have a valid value"),
        (400, "order_by does not have a valid value"),
    ]
    assert standin.notes("g/sub/p", 1) == []


async def test_note_as_form_and_query_and_activity_filter(url: str, standin: GitLabStandIn) -> None:
    standin.set_reviewers("g/sub/p", 1, ["carol"])  # leaves a system note
    notes = f"{url}/api/v4/projects/g%2Fsub%2Fp/merge_requests/1/notes"
    async with aiohttp.ClientSession(headers={"PRIVATE-TOKEN": TOKEN}) as http:
        async with http.post(notes, data={"body": "as a form"}) as r:
            assert r.status == 201 and (await r.json())["body"] == "as a form"
        async with http.post(notes + "?body=in+the+query") as r:
            assert r.status == 201
        async with http.get(notes + "?activity_filter=only_comments&sort=asc") as r:
            assert [n["body"] for n in await r.json()] == ["as a form", "in the query"]
        async with http.get(notes + "?activity_filter=only_activity") as r:
            assert [n["body"] for n in await r.json()] == [
                "requested review from @carol and removed review request for @bob"
            ]


def test_reviewers_set_by_a_person_leave_their_system_note(standin: GitLabStandIn) -> None:
    standin.set_reviewers("g/sub/p", 1, ["carol"], by="alice")
    [note] = [n for n in standin.notes("g/sub/p", 1) if n["system"]]
    assert note["author"]["username"] == "alice"
    assert note["body"].startswith("requested review from @carol")
    assert standin.merge_request("g/sub/p", 1)["reviewers"][0]["username"] == "carol"


async def test_update_reviewer_ids(url: str, standin: GitLabStandIn) -> None:
    ids = {name: standin.user(name)["id"] for name in ("alice", "bob", "carol")}

    def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        with client(url) as gl:
            mrs = gl.projects.get("g/sub/p", lazy=True).mergerequests
            both = mrs.update(1, {"reviewer_ids": [ids["alice"], ids["carol"], 999]})
            cleared = mrs.update(1, {"reviewer_ids": []})
            zero = mrs.update(1, {"reviewer_ids": [ids["bob"]]}) and mrs.update(
                1, {"reviewer_ids": [0]}
            )
            return both, cleared, zero

    (both, cleared, zero), caught = await in_thread(scenario)
    assert caught == []
    assert [r["username"] for r in both["reviewers"]] == ["alice", "carol"]  # 999: dropped
    assert cleared["reviewers"] == [] and zero["reviewers"] == []
    assert both["updated_at"] != standin.merge_request("g/sub/p", 2)["updated_at"]
    assert [n["body"] for n in standin.notes("g/sub/p", 1) if n["system"]] == [
        "requested review from @alice and @carol and removed review request for @bob",
        "removed review request for @alice and @carol",
        "requested review from @bob",
        "removed review request for @bob",
    ]
    assert all(n["author"]["username"] == "roulette-bot" for n in standin.notes("g/sub/p", 1))
    method, path, sent = standin.writes[0]
    assert (method, path) == ("PUT", "/api/v4/projects/g%2Fsub%2Fp/merge_requests/1")
    assert sent == {"reviewer_ids": [ids["alice"], ids["carol"], 999]}


async def test_mr_save_resends_extra_keys_that_are_ignored(
    url: str, standin: GitLabStandIn
) -> None:
    carol = standin.user("carol")["id"]

    def scenario() -> Any:
        with client(url) as gl:
            mr = gl.projects.get("g/sub/p", lazy=True).mergerequests.get(1)
            assert [r["username"] for r in mr.reviewers] == ["bob"]  # a read of the list...
            mr.reviewer_ids = [carol]
            mr.save()
            return mr

    mr, caught = await in_thread(scenario)
    assert caught == []
    _, _, sent = standin.writes[-1]
    assert sent["reviewer_ids"] == [carol]
    assert "reviewers" in sent  # ...makes python-gitlab resend it: GitLab ignores it
    assert [r["username"] for r in mr.reviewers] == ["carol"]  # updated from the answer
    assert [r["username"] for r in standin.merge_request("g/sub/p", 1)["reviewers"]] == ["carol"]


async def test_update_forms_and_validation(url: str, standin: GitLabStandIn) -> None:
    ids = [standin.user(name)["id"] for name in ("alice", "carol")]
    mr_url = f"{url}/api/v4/projects/g%2Fsub%2Fp/merge_requests/1"
    async with aiohttp.ClientSession(headers={"PRIVATE-TOKEN": TOKEN}) as http:
        form = [("reviewer_ids[]", str(ids[0])), ("reviewer_ids[]", str(ids[1]))]
        async with http.put(mr_url, data=form) as r:
            assert [u["username"] for u in (await r.json())["reviewers"]] == ["alice", "carol"]
        async with http.put(mr_url, data={"reviewer_ids": ""}) as r:
            assert (await r.json())["reviewers"] == []
        async with http.put(mr_url + f"?reviewer_ids={ids[1]},{ids[0]}") as r:
            assert [u["username"] for u in (await r.json())["reviewers"]] == ["carol", "alice"]
        for body, error in [
            ({"reviewers": []}, "at least one parameter must be provided"),
            ({"reviewer_ids": ["bob"]}, "reviewer_ids is invalid"),
            ({"state_event": "merge"}, "state_event does not have a valid value"),
            ({"title": " "}, "title is empty"),
        ]:
            async with http.put(mr_url, json=body) as r:
                assert r.status == 400
                assert error in (await r.json())["error"]
        async with http.put(mr_url.removesuffix("/1") + "/99", json={"title": "x"}) as r:
            assert (r.status, await r.json()) == (404, {"message": "404 Not found"})


async def test_update_title_labels_and_state(url: str, standin: GitLabStandIn) -> None:
    def scenario() -> list[dict[str, Any]]:
        with client(url) as gl:
            mrs = gl.projects.get("g/sub/p", lazy=True).mergerequests
            return [
                mrs.update(2, {"title": "WIP thing, done"}),
                mrs.update(2, {"add_labels": "ready,backend", "remove_labels": ["nope"]}),
                mrs.update(2, {"state_event": "close"}),
                mrs.update(2, {"state_event": "reopen", "description": "now"}),
            ]

    (ready, labelled, closed, reopened), _ = await in_thread(scenario)
    assert ready["draft"] is False and ready["title"] == "WIP thing, done"
    assert ready["detailed_merge_status"] == "mergeable"
    assert labelled["labels"] == ["ready", "backend"]
    assert closed["state"] == "closed" and closed["closed_by"]["username"] == "roulette-bot"
    assert closed["detailed_merge_status"] == "not_open"
    assert reopened["state"] == "opened" and reopened["description"] == "now"
    assert [n["body"] for n in standin.notes("g/sub/p", 2)] == [
        "changed title from **WIP thing** to **WIP thing, done**",
        "marked this merge request as **ready**",
        "closed",
        "reopened",
    ]


async def test_approvals(url: str, standin: GitLabStandIn) -> None:
    mr = standin.add_merge_request("g/sub/p", author="alice", approvals_required=2)
    standin.approve("g/sub/p", mr["iid"], "bob")
    standin.approve("g/sub/p", mr["iid"], "bob")  # twice: still one approval

    def scenario() -> tuple[Any, Any]:
        with client(url) as gl:
            p = gl.projects.get("g/sub/p", lazy=True)
            approvals = p.mergerequests.get(mr["iid"], lazy=True).approvals.get()
            return approvals, p.mergerequests.get(1, lazy=True).approvals.get()

    (approvals, none_required), caught = await in_thread(scenario)
    assert caught == []
    assert [a["user"]["username"] for a in approvals.approved_by] == ["bob"]
    assert (approvals.approvals_required, approvals.approvals_left) == (2, 1)
    assert approvals.approved is False
    assert approvals.user_has_approved is False and approvals.user_can_approve is True
    assert none_required.approved is True and none_required.approvals_left == 0
    assert standin.merge_request("g/sub/p", mr["iid"])["detailed_merge_status"] == "not_approved"
    standin.approve("g/sub/p", mr["iid"], "carol")
    assert standin.merge_request("g/sub/p", mr["iid"])["detailed_merge_status"] == "mergeable"
    standin.unapprove("g/sub/p", mr["iid"], "bob")
    assert [n["body"] for n in standin.notes("g/sub/p", mr["iid"])] == [
        "approved this merge request",
        "approved this merge request",
        "unapproved this merge request",
    ]


async def test_gitlab_free_approvals_and_single_reviewer() -> None:
    free = GitLabStandIn(TOKEN, premium=False)
    for name in ("alice", "bob", "carol"):
        free.add_user(name)
    free.add_project("g/p")
    free.add_merge_request("g/p", author="alice")
    free.approve("g/p", 1, "bob")
    async with serve(free) as url:

        def scenario() -> tuple[Any, dict[str, Any]]:
            with client(url) as gl:
                mrs = gl.projects.get("g/p", lazy=True).mergerequests
                both = [free.user("bob")["id"], free.user("carol")["id"]]
                return mrs.get(1, lazy=True).approvals.get(), mrs.update(1, {"reviewer_ids": both})

        (approvals, updated), _ = await in_thread(scenario)
    assert approvals.attributes.keys() >= {"approved", "approved_by", "user_has_approved"}
    assert "approvals_required" not in approvals.attributes
    assert approvals.approved is True
    assert [r["username"] for r in updated["reviewers"]] == ["bob"]  # Free: one reviewer


async def test_failure_after_the_work_is_done(url: str, standin: GitLabStandIn) -> None:
    standin.fail_next(r"/notes$", 502, method="POST", after=True)

    def scenario() -> gle.GitlabCreateError:
        with client(url) as gl, pytest.raises(gle.GitlabCreateError) as caught:
            mr = gl.projects.get("g/sub/p", lazy=True).mergerequests.get(1, lazy=True)
            mr.notes.create({"body": "lost answer"})
        return caught.value

    error, _ = await in_thread(scenario)
    assert error.response_code == 502
    assert [n["body"] for n in standin.notes("g/sub/p", 1)] == ["lost answer"]  # yet stored


def test_model_api_for_merge_request_life() -> None:
    s = GitLabStandIn()
    s.add_user("alice")
    s.add_user("bob")
    s.add_project("g/p")
    s.add_merge_request("g/p", author="alice", title="Thing")
    s.set_draft("g/p", 1)
    assert s.merge_request("g/p", 1)["title"] == "Draft: Thing"
    s.set_draft("g/p", 1, False, by="bob")
    assert s.merge_request("g/p", 1)["draft"] is False
    note = s.add_note("g/p", 1, "bob", "LGTM", internal=True)
    assert note["internal"] is True and note["author"]["username"] == "bob"
    s.close("g/p", 1)
    with pytest.raises(ValueError, match="cannot close"):
        s.close("g/p", 1)
    with pytest.raises(ValueError, match="not opened"):
        s.merge("g/p", 1)
    s.reopen("g/p", 1)
    merged = s.merge("g/p", 1, by="bob")
    assert merged["state"] == "merged" and merged["merged_by"]["username"] == "bob"
    assert merged["merge_commit_sha"] and merged["merged_at"]
    assert [n["body"] for n in s.notes("g/p", 1) if n["system"]] == [
        "marked this merge request as **draft**",
        "marked this merge request as **ready**",
        "closed",
        "reopened",
        "merged",
    ]
    assert s.bot["username"] == "roulette-bot"
    assert s.label("g/p", "backend")["id"] == s.label("g/p", "backend")["id"]
    with pytest.raises(KeyError):
        s.notes("g/p", 9)
    with pytest.raises(ValueError, match="already exists"):
        s.add_user("roulette-bot")


async def test_latency_is_added_to_every_answer_and_calls_are_timed(
    url: str, standin: GitLabStandIn
) -> None:
    standin.latency, standin.jitter = 0.03, 0.01
    gl = client(url)
    await in_thread(lambda: gl.http_get("/projects/g%2Fsub%2Fp"))
    await in_thread(lambda: gl.http_get("/users", query_data={"username": "alice"}))
    assert len(standin.timeline) == 2
    first, second = standin.timeline
    assert all(end - start >= 0.03 for start, end, _, _ in standin.timeline)
    assert second[0] >= first[1]  # one after the other: the second waited for the first
    assert [call[2:] for call in standin.timeline] == [
        ("GET", "/api/v4/projects/g%2Fsub%2Fp"),
        ("GET", "/api/v4/users?username=alice"),
    ]


def test_latency_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="latency"):
        GitLabStandIn(TOKEN, latency=-0.01)


def test_sequential_round_trips_counts_the_longest_chain_of_calls() -> None:
    from benchmarks.webhooks import sequential_round_trips

    assert sequential_round_trips([]) == 0
    together = [(0.0, 1.0), (0.1, 1.1), (0.2, 0.9)]
    assert sequential_round_trips(together) == 1
    # MR and notes together, then diffs and CODEOWNERS together, then the note.
    waves = [(0.0, 1.0), (0.0, 1.0), (1.1, 2.0), (1.1, 2.1), (2.2, 3.0)]
    assert sequential_round_trips(waves) == 3
    assert sequential_round_trips([(float(n), n + 0.5) for n in range(11)]) == 11
