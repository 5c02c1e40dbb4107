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
                "X-Total": "133",
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
