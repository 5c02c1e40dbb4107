"""Injection probes: hostile text in every API parameter and chat argument is data.

Payloads: SQL metacharacters, path traversal (plain and percent-encoded), Markdown that
Mattermost would render (bold, a link, an image, ``@channel``/``@all`` mentions, a code
span), HTML and script for the dashboard page, Jinja2 delimiters. Sent to every path and
query parameter and body field of the API v1, to the page's query, and as every chat
argument (``/roulette`` URL and flags, ``/ooo`` dates and reason, the ``/ooo`` dialog,
``/leaderboard`` team, ``/badges`` user), and stored where the product stores text (a
badge's name and description through the admin API, a team's name in the configuration,
an out-of-office reason), then shown back (the page, ``/badges``, ``/leaderboard``,
``/ooo list``, the badge announcement, the digest).

Each time: a 4xx or a normal answer, never a 5xx; no other row of the database changed;
what is stored is the value as given; shown as text: HTML-escaped on the page (no live
tag), Markdown-escaped in chat (no live emphasis, link, image, code span or mention:
``@channel`` and ``@all`` notify nobody), ``{{7*7}}`` never ``49``. Both engines.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import URL

from bot.app import SCHEDULER
from bot.db import Base
from bot.http import CONTEXT
from tests.dashboard.conftest import ALL, HOSTILE, TOKEN, MakeClient, areas, start
from tests.e2e.conftest import PROJECT
from tests.e2e.test_mattermost_flow import TEAM, _until
from tests.e2e.test_mattermost_flow import mattermost as mattermost
from tests.e2e.test_mattermost_flow import port as port
from tests.roulette.conftest import gitlab_url as gitlab_url
from tests.roulette.conftest import standin as standin

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SQL = ("' OR 1=1 --", '"; DROP TABLE users; --')
TRAVERSAL = ("../../etc/passwd", "%2e%2e%2f", "..%2f..%2fetc%2fpasswd")
MARKDOWN = (
    "**bold**",
    "[link](http://evil)",
    "![img](http://evil/x.png)",
    "@channel",
    "@all",
    "`code`",
)
HTML = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
JINJA = ("{{7*7}}", "{% for x in y %}{% endfor %}")
PAYLOADS = (*SQL, *TRAVERSAL, *MARKDOWN, *HTML, *JINJA)
# Everything at once, for the places that store one text.
ALL_IN_ONE = "' OR 1=1 -- **bold** [link](http://evil) ![img](http://evil/x.png) @channel "
ALL_IN_ONE += "@all `code` <script>alert(1)</script> {{7*7}} ../../etc/passwd"


# --------------------------------------------------------------------------- helpers


async def snapshot(client: Client, *skip: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but ``skip``), in primary-key order."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with client.app[CONTEXT].sessions() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            try:
                result = await session.execute(select(table).order_by(*table.primary_key))
            except Exception:  # a table of an area whose migrations did not run
                await session.rollback()
                continue
            rows[table.name] = [tuple(r) for r in result.all()]
    return rows


def live_html(html: str) -> list[str]:
    """Hostile markup that would be live in the page."""
    found = []
    for tag in ("<script>alert(1)", "<img src=x", "onerror=alert(1)>"):
        if tag in html:
            found.append(tag)
    text = re.sub(r"<svg\b.*?</svg>", "", html, flags=re.DOTALL)  # coordinates aside
    if re.search(r"(?<![\d.])49(?![\d.])", text):
        found.append("49")
    return found


async def answer(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    """Status and JSON body; never a 5xx, always JSON with an error text for a 4xx."""
    response = await client.request(method, path, **kwargs)
    text = await response.text()
    assert response.status < 500, (method, path, response.status, text)
    if response.status >= 400:
        body = await response.json()
        assert isinstance(body.get("error"), str) and body["error"], text
        return response.status, body
    return response.status, await response.json() if "json" in response.content_type else text


# --------------------------------------------------------------------------- the API


@pytest.fixture
async def api(migrated_url: URL, aiohttp_client: MakeClient) -> AsyncIterator[Client]:
    client = await start(aiohttp_client, migrated_url, areas(*ALL))
    yield client


async def test_read_parameters_refuse_or_answer_and_change_nothing(api: Client) -> None:
    before = await snapshot(api)
    for payload in PAYLOADS:
        await _read_probes(api, payload)
    assert await snapshot(api) == before


async def _read_probes(api: Client, payload: str) -> None:
    segment = quote(payload, safe="")
    for path in (
        f"/api/v1/leaderboard/{segment}",
        f"/api/v1/users/{segment}/stats",
        f"/api/v1/users/{segment}/badges",
        f"/api/v1/badges/{segment}",
        f"/api/v1/badges/{segment}/holders",
    ):
        status, body = await answer(api, "GET", path)
        if payload == HOSTILE and "/users/" in path:  # erin's Mattermost name (the seed)
            assert status == 200, body
            if isinstance(body, dict):  # the stats (the badges: an empty list)
                assert body["user"]["mattermost"] == HOSTILE
            continue
        assert status == 404, (path, body)
    for path, names in (
        ("/api/v1/leaderboard", ("period", "by")),
        ("/api/v1/leaderboard/backend", ("period", "by")),
        ("/api/v1/users/alice/stats", ("period",)),
    ):
        for name in names:
            status, body = await answer(api, "GET", path, params={name: payload})
            assert status == 400 and name in body["error"], (path, name, body)
    # The page: any period and team, HTML-escaped where they are shown.
    status, html = await answer(api, "GET", "/", params={"period": payload, "team": payload})
    assert status == 200 and not live_html(html), live_html(html)


async def test_traversal_in_the_raw_path_reaches_nothing(api: Client) -> None:
    """Encoded slashes and dot segments as sent on the wire (not normalised by a client)."""
    from yarl import URL as HttpURL

    for raw in (
        "/api/v1/badges/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/badges/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/users/..%2F..%2F/stats",
        "/api/v1/leaderboard/..%2Fbackend",
        "/%2e%2e/%2e%2e/etc/passwd",
    ):
        response = await api.get(HttpURL(raw, encoded=True))
        text = await response.text()
        assert response.status in (400, 404), (raw, response.status, text)
        assert "root:" not in text


async def test_ooo_body_fields(api: Client) -> None:
    from plugins.ooo.models import OooStatus

    before = await snapshot(api)
    for payload in PAYLOADS:
        for field in ("user", "start", "end"):
            if field == "user" and payload == HOSTILE:
                continue  # erin's Mattermost name (the seed): a member, not a probe
            body = {"user": "bob", "start": "2026-03-12", "end": "2026-03-13", field: payload}
            status, answered = await answer(api, "POST", "/api/v1/ooo", json=body, headers=AUTH)
            assert status == 400, (field, payload, answered)
    assert await snapshot(api) == before
    # The reason is free text: stored and answered as given (one period per payload).
    for day, payload in enumerate(PAYLOADS, start=12):
        body = {"user": "bob", "start": f"2026-04-{day}", "end": f"2026-04-{day}"}
        status, answered = await answer(
            api, "POST", "/api/v1/ooo", json=body | {"reason": payload}, headers=AUTH
        )
        assert status == 201 and answered["reason"] == payload, answered
    after = await snapshot(api, "ooo_status")
    assert after == {k: v for k, v in before.items() if k != "ooo_status"}
    async with api.app[CONTEXT].sessions() as session:
        reasons = (await session.scalars(select(OooStatus.reason).order_by(OooStatus.id))).all()
    assert list(reasons) == list(PAYLOADS)


@pytest.mark.skipif("badges" not in areas(*ALL), reason="the badges area is not here")
async def test_badge_definition_fields(api: Client) -> None:
    before = await snapshot(api)
    base = {"slug": "probe", "name": "Probe", "metric": "comments", "operator": ">=", "value": 1}
    for payload in PAYLOADS:
        for field in ("slug", "metric", "operator", "period"):
            status, body = await answer(
                api, "POST", "/api/v1/admin/badges", json=base | {field: payload}, headers=AUTH
            )
            assert status == 400 and field in body["error"], (field, body)
    assert await snapshot(api) == before
    for number, payload in enumerate(PAYLOADS):
        slug = f"probe-{number}"
        definition = base | {"slug": slug, "name": payload, "description": payload}
        status, body = await answer(
            api, "POST", "/api/v1/admin/badges", json=definition | {"emoji": payload}, headers=AUTH
        )
        assert status == 200, body
        assert (body["name"], body["description"], body["emoji"]) == (payload,) * 3
        status, shown = await answer(api, "GET", f"/api/v1/badges/{slug}")
        assert (shown["name"], shown["description"]) == (payload, payload)
    assert await snapshot(api, "badges") == {k: v for k, v in before.items() if k != "badges"}


# --------------------------------------------------------------------------- stored, then shown

HOSTILE_TEAM = "<script>alert(1)</script> **x** [l](http://evil) @all `c` {{7*7}} a/b"


async def seed_hostile(client: Client) -> None:
    """frank of the hostile team: completed reviews this week (the leaderboard shows the
    team; the dashboard's seed gave every team its chart figures), and a badge whose
    name and description are hostile, his."""
    from datetime import timedelta

    from bot.models import User
    from plugins.metrics.models import ReviewMetric
    from tests.dashboard.conftest import NOW, TODAY

    async with client.app[CONTEXT].sessions.begin() as session:
        frank = await session.scalar(select(User).where(User.gitlab_username == "frank"))
        assert frank is not None
        monday = TODAY - timedelta(days=TODAY.weekday())
        session.add(
            ReviewMetric(
                day=monday,
                scope="user",
                subject_id=frank.id,
                reviews_assigned=9,
                reviews_completed=9,
                ttfr_seconds_sum=3600.0 * 9,
                ttfr_count=9,
                engagement_score=90.0,
            )
        )
    if "badges" in areas(*ALL):
        from plugins.badges.models import Badge, UserBadge

        status, _ = await answer(
            client,
            "POST",
            "/api/v1/admin/badges",
            json={
                "slug": "hostile",
                "name": ALL_IN_ONE[:100],
                "description": ALL_IN_ONE,
                "metric": "comments",
                "operator": ">=",
                "value": 1,
            },
            headers=AUTH,
        )
        assert status == 200
        async with client.app[CONTEXT].sessions.begin() as session:
            badge = await session.scalar(select(Badge).where(Badge.slug == "hostile"))
            assert badge is not None
            session.add(
                UserBadge(user_id=frank.id, badge_id=badge.id, period="2026-W10", awarded_at=NOW)
            )


@pytest.fixture
async def hostile(migrated_url: URL, aiohttp_client: MakeClient) -> Client:
    from tests.dashboard.conftest import TEAMS, USERS

    client = await start(
        aiohttp_client,
        migrated_url,
        areas(*ALL),
        teams=[*TEAMS, {"name": HOSTILE_TEAM}],
        users=[*USERS, {"gitlab": "frank", "team": HOSTILE_TEAM}],
    )
    await seed_hostile(client)
    return client


async def test_the_page_shows_stored_hostile_text_as_text(hostile: Client) -> None:
    for query in ("", "?period=all", f"?team={quote(HOSTILE_TEAM)}"):
        status, html = await answer(hostile, "GET", "/" + query)
        assert status == 200 and not live_html(html), (query, live_html(html))
        # The team (navigation, leaderboard, chart legend) and the badge, escaped.
        assert "&lt;script&gt;alert(1)&lt;/script&gt; **x** [l](http://evil)" in html
    if "badges" in areas(*ALL):
        assert "{{7*7}}" in html and "&lt;script&gt;" in html


async def test_a_team_name_with_a_slash_is_reachable(hostile: Client) -> None:
    status, body = await answer(
        hostile, "GET", f"/api/v1/leaderboard/{quote(HOSTILE_TEAM, safe='')}"
    )
    assert status == 200, body
    assert body["team"] == HOSTILE_TEAM
    assert [e["username"] for e in body["entries"]] == ["frank"]


# --------------------------------------------------------------------------- chat

_AT_MENTION = re.compile(r"\B@([A-Za-z0-9][A-Za-z0-9.\-_:]*)")  # the stand-in's, Mattermost's


def live_markdown(text: str) -> list[str]:
    """What of the payloads would render, link or notify in a Mattermost post."""
    found = []
    for live in ("**bold**", "**x**", "`code`", "`c`", "![img]", "http://evil"):
        if live in text:
            found.append(live)
    if re.search(r"(?<!\\)\[(link|l|img)(?<!\\)\]\(", text):
        found.append("a link")
    mentioned = {m.lower().rstrip(".-_:") for m in _AT_MENTION.findall(text)}
    found += sorted(mentioned & {"channel", "all", "here"})
    if re.search(r"(?<![\d.])49(?![\d.])", text):
        found.append("49")
    return found


CHAT_TEAM = "**x**[l](http://evil)@all`c`{{7*7}}"  # one word: /leaderboard can name it
CHAT_USERS = [
    {"gitlab": "alice", "team": "backend", "role": "maintainer"},
    {"gitlab": "bob", "team": "backend"},
    {"gitlab": "carol", "team": "backend", "email": "dba@example.com"},
    {"gitlab": "dave", "team": "frontend"},
    {"gitlab": "erin", "team": "frontend"},
    {"gitlab": "frank", "team": CHAT_TEAM},
]


@dataclass
class Chat:
    client: Client
    mm: Any
    gitlab: Any

    async def slash(self, user: str, line: str) -> str:
        """The answer the user sees (ephemeral or in the channel)."""
        status, body = await self.mm.run_slash_command(user, "reviews", line, team=TEAM)
        assert status == 200, (line, body)
        return str(body.get("text", ""))

    def posts(self) -> list[str]:
        """Every post the stand-in holds: channels and DMs."""
        return [p["message"] for p in self.mm._posts]  # the stand-in's record


@pytest.fixture
async def chat(
    migrated_url: URL,
    gitlab_url: str,
    standin: Any,
    mattermost: Any,
    aiohttp_client: MakeClient,
    port: int,
) -> Chat:
    from bot.app import create_app
    from bot.users import sync_organisation
    from tests.e2e.conftest import e2e_settings
    from tests.roulette.conftest import TEAMS as ROULETTE_TEAMS

    mm, mm_url = mattermost
    settings = e2e_settings(
        migrated_url,
        gitlab_url,
        teams=[*ROULETTE_TEAMS, {"name": CHAT_TEAM, "channel": "reviews"}],
        users=CHAT_USERS,
        mattermost_url=mm_url,
        mattermost_token=mm.bot_token,
        mattermost_team=TEAM,
        api_tokens=TOKEN,
        public_url=f"http://127.0.0.1:{port}",
    )
    client = await aiohttp_client(create_app(settings), server_kwargs={"port": port})
    await sync_organisation(client.app[CONTEXT].sessions, settings)
    await _until(lambda: client.app[CONTEXT].chat_.state == "connected")
    await client.app[SCHEDULER].stop(grace=0)  # no job on the wall clock between snapshots
    return Chat(client, mm, standin)


async def test_chat_arguments_are_shown_as_text(chat: Chat) -> None:
    from plugins.ooo.models import OooStatus

    url = f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/1"
    before = await snapshot(chat.client, "configuration")  # but the chat's post cursor
    shown: list[tuple[str, str]] = []
    for payload in PAYLOADS:
        word = payload.replace(" ", "")  # one argument
        for line in (
            f"/roulette {payload}",
            f"/roulette {url} --{word}",
            f"/ooo {payload} 2099-01-02",
            f"/ooo 2099-01-01 {payload}",
            f"/ooo cancel {payload}",
            f"/leaderboard {payload}",
            f"/leaderboard --period {word}",
            f"/badges {word}",
        ):
            shown.append((line, await chat.slash("alice", line)))
    assert await snapshot(chat.client, "configuration") == before, "a refusal changed data"
    assert chat.gitlab.merge_request(PROJECT, 1)["reviewers"] == []
    # --include and --exclude: a payload that is a username's shape (@all) is a normal
    # request for that person, and the roll goes on; the others are refused.
    for payload in PAYLOADS:
        word = payload.replace(" ", "")
        for line in (f"/roulette {url} --include @{word}", f"/roulette {url} --exclude {word}"):
            shown.append((line, await chat.slash("alice", line)))
    live = [(line, text, live_markdown(text)) for line, text in shown if live_markdown(text)]
    assert not live, "\n".join(map(repr, live))

    # A reason is stored as given and shown as text, in /ooo's answers and its list.
    for day, payload in enumerate(PAYLOADS, start=10):
        text = await chat.slash("dave", f"/ooo 2099-01-{day} 2099-01-{day} {payload}")
        assert not live_markdown(text), (payload, text)
    listed = await chat.slash("dave", "/ooo list")
    assert not live_markdown(listed), listed
    async with chat.client.app[CONTEXT].sessions() as session:
        reasons = (await session.scalars(select(OooStatus.reason).order_by(OooStatus.id))).all()
    assert list(reasons) == list(PAYLOADS)


async def test_dialog_fields_are_shown_as_text(chat: Chat) -> None:
    from plugins.ooo.models import OooStatus

    await chat.slash("erin", "/ooo")
    [dialog] = chat.mm.dialogs_opened
    for payload in PAYLOADS:
        for field in ("start", "end"):
            values = {"start": "2099-02-01", "end": "2099-02-02", field: payload}
            status, body = await chat.mm.submit_dialog(dialog, "erin", values)
            # A field's error is plain text under the field (no Markdown): as typed.
            assert status == 200 and payload.strip() in body["errors"][field], body
    for day, payload in enumerate(PAYLOADS, start=10):
        values = {"start": f"2099-02-{day}", "end": f"2099-02-{day}", "reason": payload}
        status, body = await chat.mm.submit_dialog(dialog, "erin", values)
        assert (status, body) == (200, {}), (payload, body)
    async with chat.client.app[CONTEXT].sessions() as session:
        reasons = (await session.scalars(select(OooStatus.reason).order_by(OooStatus.id))).all()
    assert list(reasons) == list(PAYLOADS)
    for text in chat.posts():
        assert not live_markdown(text), text


async def test_stored_names_are_shown_as_text_in_chat(chat: Chat) -> None:
    """A team's name from the configuration, badge names and descriptions from the admin
    API, a merge request's title: in /leaderboard, /badges, the award announcement and
    the digest in the team's channel."""
    from datetime import date

    from bot.app import REGISTRY
    from bot.models import User
    from plugins.metrics.models import ReviewMetric

    async with chat.client.app[CONTEXT].sessions.begin() as session:
        frank = await session.scalar(select(User).where(User.gitlab_username == "frank"))
        assert frank is not None
        session.add(
            ReviewMetric(
                day=date.today(),
                scope="user",
                subject_id=frank.id,
                reviews_assigned=3,
                reviews_completed=3,
                engagement_score=30.0,
            )
        )
    texts = [await chat.slash("alice", "/leaderboard"), await chat.slash("alice", "/leaderboard")]
    texts.append(await chat.slash("alice", f"/leaderboard {CHAT_TEAM}"))
    texts.append(await chat.slash("alice", "/leaderboard nope"))  # lists the teams
    if "badges" in areas(*ALL):
        from plugins.badges.models import Badge, UserBadge
        from plugins.badges.service import NewAward

        for number, payload in enumerate((*PAYLOADS, ALL_IN_ONE[:100])):
            status, _ = await answer(
                chat.client,
                "POST",
                "/api/v1/admin/badges",
                json={
                    "slug": f"probe-{number}",
                    "name": payload,
                    "description": payload,
                    "emoji": payload[:64],
                    "metric": "comments",
                    "operator": ">=",
                    "value": 1,
                },
                headers=AUTH,
            )
            assert status == 200
        async with chat.client.app[CONTEXT].sessions.begin() as session:
            badges = (await session.scalars(select(Badge).where(Badge.slug.like("probe-%")))).all()
            for badge in badges:
                session.add(UserBadge(user_id=frank.id, badge_id=badge.id, period="2026-W10"))
        texts.append(await chat.slash("alice", "/badges catalogue"))
        texts.append(await chat.slash("alice", "/badges @frank"))
        texts.append(await chat.slash("frank", "/badges"))
        [plugin] = [p for p in chat.client.app[REGISTRY].plugins if p.name == "badges"]
        for badge in badges:
            await plugin.announce(
                NewAward(
                    badge.slug,
                    badge.name,
                    badge.emoji,
                    frank.id,
                    "frank",
                    "frank",
                    CHAT_TEAM,
                    "2026-W10",
                )
            )
    # The digest: the team's name and a review's title (GitLab's, free text) in its channel.
    from datetime import UTC, datetime, timedelta

    from bot.models import MrReview, ReviewerAssignment, Team

    now = datetime.now(UTC)
    async with chat.client.app[CONTEXT].sessions.begin() as session:
        team = await session.scalar(select(Team).where(Team.name == CHAT_TEAM))
        assert team is not None
        review = MrReview(
            project_id=10,
            project_path=PROJECT,
            mr_iid=77,
            title=ALL_IN_ONE,
            web_url=f"{chat.gitlab.base_url}/{PROJECT}/-/merge_requests/77",
            author_username="alice",
            team_id=team.id,
            state="open",
            triggered_at=now - timedelta(hours=3),
        )
        session.add(review)
        await session.flush()
        session.add(
            ReviewerAssignment(
                review_id=review.id,
                user_id=frank.id,
                role="team",
                status="active",
                assigned_at=now - timedelta(hours=3),
            )
        )
    # A merge request whose title (GitLab's, free text) is hostile: /roulette's answer in
    # the channel, the reviewers' DMs and their Accept / Pass / Snooze requests.
    hostile_mr = chat.gitlab.add_merge_request(
        PROJECT, author="alice", title=ALL_IN_ONE, labels=["team::backend"]
    )
    texts.append(await chat.slash("alice", f"/roulette {hostile_mr['web_url']}"))
    assert chat.gitlab.merge_request(PROJECT, hostile_mr["iid"])["reviewers"]
    [digest] = [p for p in chat.client.app[REGISTRY].plugins if p.name == "digest"]
    await digest.send(now)
    assert any("merge_requests/77" in text for text in chat.posts()), "the digest was posted"

    for text in texts:
        assert not live_markdown(text), (text, live_markdown(text))
    for text in chat.posts():
        assert not live_markdown(text), (text, live_markdown(text))
    assert any("frank" in text for text in chat.posts()), "the awards were announced"


def test_markdown_text_leaves_ordinary_text_alone_and_neutralises_the_rest() -> None:
    from bot.chat import ZERO_WIDTH_SPACE, markdown_text

    for ordinary in ("alice", "jean-pierre.dupont", "Speed Demon", "2099-01-02", "on call"):
        assert markdown_text(ordinary) == ordinary
    assert markdown_text("**bold**") == "\\*\\*bold\\*\\*"
    assert markdown_text("[l](http://evil)") == "\\[l\\]\\(http\\://evil\\)"
    assert markdown_text("see www.evil.com") == "see www\\.evil.com"
    assert (
        markdown_text("@all and ~town") == f"@{ZERO_WIDTH_SPACE}all and \\~{ZERO_WIDTH_SPACE}town"
    )
    assert markdown_text("two\nlines") == "two lines"
    assert markdown_text("{{7*7}}") == "{{7\\*7}}"
