"""Every chat answer within Mattermost's post limit: the one function that fits a text
(runes, line boundaries, tables, code blocks, grapheme clusters), the adapter's limit and
its responses, and the stand-in refusing what Mattermost refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from mattermostautodriver import AsyncTypedDriver
from mattermostautodriver.exceptions import InvalidOrMissingParameters
from prometheus_client import CollectorRegistry

from bot.chat import LEGACY_POST_LIMIT, POST_LIMIT, REPLY_PARTS, Reply, fit_to_post
from bot.mattermost import Mattermost, command_response, post_limit_for
from bot.sandbox.mattermost import MattermostStandIn, driver_options, serve
from bot.settings import Settings

MARKER = regex.compile(r"… and (\d+) more$")


def lines_of(count: int, width: int = 20) -> str:
    return "\n".join(f"- @user{i:04d}: {'x' * width}" for i in range(count))


# ----------------------------------------------------------------- fit_to_post


def test_a_text_within_the_limit_is_unchanged() -> None:
    text = "a" * POST_LIMIT
    assert fit_to_post(text, POST_LIMIT, "en") == [text]
    assert fit_to_post("", POST_LIMIT, "en") == [""]


def test_the_exact_boundary_16383_vs_16384() -> None:
    line = "y" * 99
    body = "\n".join([line] * 163) + "\n" + "z" * 83  # 163 * 100 + 83 = 16,383 runes
    assert len(body) == POST_LIMIT
    assert fit_to_post(body, POST_LIMIT, "en") == [body]
    longer = body + "z"
    [cut] = fit_to_post(longer, POST_LIMIT, "en")
    assert len(cut) <= POST_LIMIT
    assert cut.endswith("\n… and 1 more")  # the last line, left out whole
    assert cut.startswith(line) and "z" not in cut


def test_the_limit_counts_runes_not_bytes() -> None:
    accented = "é" * POST_LIMIT  # 32,766 bytes in UTF-8, 16,383 runes: one post
    assert fit_to_post(accented, POST_LIMIT, "en") == [accented]
    emoji = "😀" * POST_LIMIT  # 4 bytes each, one rune each
    assert fit_to_post(emoji, POST_LIMIT, "en") == [emoji]


def test_cut_between_lines_with_the_count_of_lines_left_out() -> None:
    text = lines_of(900)
    [cut] = fit_to_post(text, 4000, "en")
    assert len(cut) <= 4000
    shown = cut.split("\n")[:-1]
    left_out = int(MARKER.search(cut)[1])  # type: ignore[index]
    assert shown == text.split("\n")[: len(shown)]  # whole lines, in order
    assert len(shown) + left_out == 900


def test_the_marker_is_in_the_readers_language() -> None:
    [cut] = fit_to_post(lines_of(900), 4000, "fr")
    assert regex.search(r"… et \d+ de plus$", cut)


def test_split_into_parts_then_cut() -> None:
    text = lines_of(900)
    parts = fit_to_post(text, 4000, "en", parts=3)
    assert len(parts) == 3 and all(len(p) <= 4000 for p in parts)
    assert not MARKER.search(parts[0]) and not MARKER.search(parts[1])
    shown = [line for p in parts for line in p.split("\n")][:-1]
    assert shown == text.split("\n")[: len(shown)]
    assert len(shown) + int(MARKER.search(parts[2])[1]) == 900  # type: ignore[index]
    # Enough parts: everything, nothing marked.
    whole = fit_to_post(text, 4000, "en", parts=20)
    assert "\n".join(whole) == text


def test_a_table_is_never_cut_in_a_row_and_goes_on_under_its_header() -> None:
    header = "| reviewer | score |\n|---|---:|"
    rows = [f"| @user{i:04d} | {i}.5 |" for i in range(600)]
    text = "Candidates:\n" + header + "\n" + "\n".join(rows)
    parts = fit_to_post(text, 4000, "en", parts=2)
    first, second = (p.split("\n") for p in parts)
    assert first[1:3] == header.split("\n")
    assert second[:2] == header.split("\n")  # the table's header again
    assert all(line in rows for line in first[3:])
    # The cut part: the marker is a paragraph of its own, not a row of the table.
    assert second[-2] == "" and MARKER.fullmatch(second[-1])
    assert all(line in rows for line in second[2:-2])


def test_a_code_block_cut_in_two_is_closed_and_opened_again() -> None:
    text = "Log:\n```text\n" + "\n".join(f"line {i}" for i in range(2000)) + "\n```\nDone."
    parts = fit_to_post(text, 4000, "en", parts=3)
    for part in parts[:-1]:
        assert part.rstrip("\n").endswith("```")
    for part in parts[1:]:
        assert part.startswith("```text\n")
    assert all(part.count("```") % 2 == 0 for part in parts)


def test_a_cut_never_splits_a_character_made_of_several_code_points() -> None:
    family = "👨‍👩‍👧‍👦"  # 7 code points, one character
    flag, accent = "🇫🇷", "e\u0301"
    for unit in (family, flag, accent):
        text = unit * 5000  # one line, longer than a post
        for part in fit_to_post(text, 4000, "en", parts=20):
            assert len(part) <= 4000
            body = part.split("\n")[0]
            assert body == unit * (len(body) // len(unit))


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["a", "é", "e\u0301", "👍🏽", "|", "-", "`", "~", " ", "\n"])
        | st.sampled_from(["```", "| a | b |\n|---|---|\n", "\n\n", "x" * 40]),
        max_size=200,
    ).map("".join),
    limit=st.integers(1, 150),
    parts=st.integers(1, 5),
    locale=st.sampled_from(["en", "fr"]),
)
def test_never_over_the_limit_nor_over_the_parts(
    text: str, limit: int, parts: int, locale: str
) -> None:
    messages = fit_to_post(text, limit, locale, parts=parts)
    assert 1 <= len(messages) <= parts
    assert all(len(m) <= limit for m in messages)


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fit_to_post("x", 0, "en")


# ----------------------------------------------------------------- command responses


def test_a_long_command_answer_becomes_extra_responses_then_is_cut() -> None:
    reply = Reply(lines_of(900), "in_channel", extra=(Reply("and this", "ephemeral"),))
    body = command_response(reply, limit=4000, locale="en")
    posts = [body, *body["extra_responses"]]
    assert len(posts) == REPLY_PARTS
    assert all(len(p["text"]) <= 4000 for p in posts)
    assert [p["response_type"] for p in posts] == ["in_channel"] * 4 + ["ephemeral"]
    assert MARKER.search(posts[3]["text"]) and posts[4]["text"] == "and this"
    # A short one is as it was.
    assert command_response(Reply("ok")) == {"response_type": "ephemeral", "text": "ok"}


@pytest.mark.parametrize(
    ("version", "limit"),
    [
        ("11.2.0", POST_LIMIT),
        ("5.0.0", POST_LIMIT),
        ("4.10.1", LEGACY_POST_LIMIT),
        ("", POST_LIMIT),
    ],
)
def test_the_limit_from_the_server_version(version: str, limit: int) -> None:
    assert post_limit_for(version) == limit


# ----------------------------------------------------------------- adapter and stand-in


@pytest.fixture
async def old_server() -> AsyncIterator[tuple[MattermostStandIn, str]]:
    mm = MattermostStandIn(max_post_runes=LEGACY_POST_LIMIT, server_version="10.11.0")
    mm.add_user("alice")
    mm.add_team("acme", members=["roulette-bot", "alice"])
    mm.add_channel("acme", "reviews", members=["roulette-bot", "alice"])
    async with serve(mm) as url:
        yield mm, url


def adapter(url: str, mm: MattermostStandIn, **values: Any) -> Mattermost:
    settings = Settings(mattermost_url=url, mattermost_token=mm.bot_token, **values)
    return Mattermost(settings, CollectorRegistry())


async def test_the_adapter_learns_the_servers_limit_and_keeps_posts_within_it(
    old_server: tuple[MattermostStandIn, str],
) -> None:
    mm, url = old_server
    chat = adapter(url, mm)
    await chat.driver.login()
    try:
        assert await chat.post_limit() == LEGACY_POST_LIMIT  # the server's MaxPostSize
        channel = mm.channel("acme", "reviews")["id"]
        await chat.post(channel, lines_of(900), locale="fr")
        [post] = mm.posts_in(channel)
        assert len(post["message"]) <= LEGACY_POST_LIMIT
        assert regex.search(r"… et \d+ de plus$", post["message"])
    finally:
        await chat.stop()
    configured = adapter(url, mm, mattermost_post_limit=1000)
    try:
        assert await configured.post_limit() == 1000
    finally:
        await configured.stop()


async def test_the_standin_refuses_a_long_post_as_mattermost_does(
    old_server: tuple[MattermostStandIn, str],
) -> None:
    mm, url = old_server
    channel = mm.channel("acme", "reviews")["id"]
    driver = AsyncTypedDriver(driver_options(url, mm.bot_token))
    await driver.login()
    try:
        await driver.posts.create_post(channel_id=channel, message="é" * LEGACY_POST_LIMIT)
        with pytest.raises(InvalidOrMissingParameters) as refused:
            await driver.posts.create_post(channel_id=channel, message="é" * 4001)
        assert refused.value.error_id == "model.post.is_valid.msg.app_error"
        assert refused.value.status_code == 400
        assert [len(p["message"]) for p in mm.posts_in(channel)] == [LEGACY_POST_LIMIT]
    finally:
        await driver.client.client.aclose()


async def test_the_standin_checks_command_responses_and_ephemeral_posts() -> None:
    mm = MattermostStandIn(bot_roles="system_user system_admin")
    mm.add_user("alice")
    mm.add_team("acme", members=["roulette-bot", "alice"])
    channel = mm.add_channel("acme", "reviews", members=["roulette-bot", "alice"])["id"]
    async with serve(mm) as url:
        driver = AsyncTypedDriver(driver_options(url, mm.bot_token))
        await driver.login()
        try:
            alice = mm.user("alice")["id"]
            with pytest.raises(InvalidOrMissingParameters) as refused:
                await driver.posts.create_post_ephemeral(
                    user_id=alice, post={"channel_id": channel, "message": "x" * 16384}
                )
            assert refused.value.error_id == "model.post.is_valid.msg.app_error"
            hook = mm.add_incoming_webhook(channel, creator="roulette-bot")
            async with (
                aiohttp.ClientSession() as http,
                http.post(mm.hook_url(hook["id"]), json={"text": "w" * 20000}) as answer,
            ):
                assert answer.status == 200
            # An incoming webhook's long text is split, as SplitWebhookPost does.
            assert [len(p["message"]) for p in mm.posts_in(channel)] == [16383, 3617]
        finally:
            await driver.client.client.aclose()
