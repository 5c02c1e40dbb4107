"""Availability read from a GitLab status: busy, away keywords (cancelled by back keywords), emoji.

The table runs on the default configuration; the service tests read the statuses from the
GitLab stand-in through the cache, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cache import MemoryCache
from bot.db import create_engine, create_sessionmaker
from bot.gitlab import GitLab, MergeRequestRef, UserStatus
from bot.sandbox.gitlab import GitLabStandIn
from bot.settings import ConfigError, Settings, load_settings
from bot.users import sync_organisation
from plugins.roulette import service as service_module
from plugins.roulette.config import RouletteConfig
from plugins.roulette.service import RouletteService, StatusReader, fold_status_text
from tests.conftest import settings_for
from tests.roulette.conftest import TEAMS, TOKEN, USERS

DEFAULTS = RouletteConfig()

# message, emoji, availability -> expected ("available" | "away" | "busy", the keyword or emoji)
TABLE: list[tuple[str, str | None, str | None, str, str | None]] = [
    # id, message, emoji, expected status, what the detail names
    ("back from vacation", "back from vacation", None, "available", None),
    ("not OOO", "not OOO, just busy with a release", None, "available", None),
    ("out-of-office", "Out-of-office until Monday", None, "away", "out of office"),
    ("en conges", "En congés", None, "away", "en congés"),
    ("on leave", "on leave", None, "away", "on leave"),
    # the same words, however they are written
    ("no accent", "en conges jusqu'au 12", None, "away", "en congés"),
    ("upper case accent", "EN CONGÉS", None, "away", "en congés"),
    ("decomposed accent", "conge\u0301s", None, "away", "congés"),
    ("singular", "Congé aujourd'hui", None, "away", "congé"),
    ("spaces", "out   of \t office", None, "away", "out of office"),
    ("underscores", "Out_Of_Office", None, "away", "out of office"),
    ("mixed separators", "OUT-of_office!", None, "away", "out of office"),
    ("ooo in capitals", "OOO", None, "away", "ooo"),
    ("pto in a sentence", "On PTO until Monday", None, "away", "pto"),
    ("plural", "Happy holidays", None, "away", "holidays"),
    ("vacations", "Summer vacations", None, "away", "vacations"),
    ("french vacances", "Vacances 🌴", None, "away", "vacances"),
    ("parental leave", "Parental-leave until March", None, "away", "parental leave"),
    ("sick", "Sick today", None, "away", "sick"),
    ("absente", "Absente cet après-midi", None, "away", "absente"),
    # a back keyword cancels the away keywords after it, in its clause only
    ("back from, any case", "BACK FROM PTO", None, "available", None),
    ("back from, my", "Back from my holidays, catching up", None, "available", None),
    ("returned", "Returned from parental leave", None, "available", None),
    ("no longer", "No longer on leave", None, "available", None),
    ("de retour de", "De retour de congés", None, "available", None),
    ("rentree", "Rentrée de vacances", None, "available", None),
    ("pas en", "Pas en congés cette semaine", None, "available", None),
    ("away then back date", "OOO, back Monday", None, "away", "ooo"),
    ("absent then de retour", "Absent, de retour le 12", None, "away", "absent"),
    ("back elsewhere", "Not in meetings; on vacation", None, "away", "vacation"),
    ("spaced dash ends a clause", "Not reachable - on PTO", None, "away", "pto"),
    ("back after is not back", "Back after my vacation", None, "away", "vacation"),
    # whole words only
    ("backlog is not back", "Clearing the backlog from vacation", None, "away", "vacation"),
    ("ptolemy", "Reading Ptolemy", None, "available", None),
    ("cooool", "cooool release", None, "available", None),
    ("leave alone", "I'll leave early today", None, "available", None),
    ("absence", "Gestion des absences", None, "available", None),
    ("sickle", "Sickle and hammer", None, "available", None),
    ("holidays inn", "holidaysinn", None, "available", None),
    # nothing said
    ("no message", None, None, "available", None),
    ("empty message", "", None, "available", None),
    ("blank message", "   ", None, "available", None),
    ("punctuation only", "-- ... !!", None, "available", None),
    ("emoji-only message", "🌴🏖️", None, "available", None),
    ("speech balloon", "Working on the release", "speech_balloon", "available", None),
    # emoji and busy, as before
    ("away emoji alone", None, "palm_tree", "away", ":palm_tree:"),
    ("away emoji with colons", "", ":Palm_Tree:", "away", ":palm_tree:"),
    ("away emoji, neutral text", "Working remotely", "airplane", "away", ":airplane:"),
    ("busy wins", "Out of office", "palm_tree", "busy", None),
]


def status(message: str | None, emoji: str | None, busy: bool = False) -> UserStatus:
    return UserStatus(availability="busy" if busy else "not_set", emoji=emoji, message=message)


@pytest.fixture(scope="module")
def reader() -> StatusReader:
    return StatusReader(DEFAULTS.away_keywords, DEFAULTS.away_emojis, DEFAULTS.back_keywords)


@pytest.mark.parametrize(
    ("message", "emoji", "expected", "named"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_status_table(
    reader: StatusReader, message: str | None, emoji: str | None, expected: str, named: str | None
) -> None:
    got = reader.availability(status(message, emoji, busy=expected == "busy"))
    assert got.status == expected
    if expected == "available":
        assert got.detail is None
    elif expected == "busy":
        assert str(got.detail) == "GitLab status is busy"
    elif named is not None and named.startswith(":"):
        assert str(got.detail) == f"GitLab status emoji {named}"
    else:
        assert str(got.detail) == f"GitLab status message says {named!r}"


def test_the_table_is_long_enough() -> None:
    assert len(TABLE) >= 30


def test_the_default_lists_cover_both_languages() -> None:
    for keyword in ("on leave", "congés", "en congé", "absent", "out of office", "ooo", "pto"):
        assert keyword in DEFAULTS.away_keywords
    for keyword in ("vacation", "vacations", "holiday", "holidays", "sick", "vacances"):
        assert keyword in DEFAULTS.away_keywords
    assert "leave" not in DEFAULTS.away_keywords  # "I'll leave early" is not away
    for keyword in ("back from", "not", "returned", "de retour"):
        assert keyword in DEFAULTS.back_keywords
    assert "back" not in DEFAULTS.back_keywords  # "back Monday" says away


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Out_Of-Office", "out of office"),
        ("  EN  Congés ", "en conges"),
        ("Ærø ﬁle", "ærø file"),  # NFKD splits the ligature; letters without marks stay
        ("OOO, back Monday", "ooo\nback monday"),
        ("Absent — de retour", "absent\nde retour"),
        ("I\u2019ll be back", "i ll be back"),
    ],
)
def test_folding(text: str, folded: str) -> None:
    assert fold_status_text(text) == folded


def test_configured_keywords_are_folded_like_messages() -> None:
    reader = StatusReader(
        ["Out-Of-Office", "  Congé  ", "sabbatical"], [":Sailboat:"], ["BACK_FROM", "fini"]
    )
    assert reader.away_keyword("out of office today") == "Out-Of-Office"
    assert reader.away_keyword("en CONGE") == "Congé"
    assert reader.away_keyword("Back from sabbatical") is None
    assert reader.away_keyword("Fini, le congé !") == "Congé"  # "fini" ends with its clause
    assert reader.away_keyword("fini le conge") is None
    assert reader.away_keyword("congés") is None  # plurals are listed, never guessed
    assert reader.availability(status("Sailing", "sailboat")).status == "away"


def test_readings_are_remembered_per_status_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pick reads every active person's status: alike statuses share one reading, and
    however many distinct statuses come, each still reads as its own."""
    monkeypatch.setattr(service_module, "_READINGS_KEPT", 8)
    reader = StatusReader(["pto"], ["palm_tree"], ["back"])
    plain = reader.availability(status(None, None))
    assert reader.availability(status(None, None)) is plain  # remembered, not read again
    for n in range(40):  # five times the bound: the memory starts afresh as it fills
        assert reader.availability(status(f"PTO day {n}", None)).status == "away"
        assert reader.availability(status(f"back from PTO {n}", None)).status == "available"
        assert reader.availability(status(f"day {n}", "palm_tree")).status == "away"
        assert len(reader._readings) <= 8
    assert reader.availability(UserStatus("busy", None, "PTO")).status == "busy"


def test_without_back_keywords_every_away_keyword_counts() -> None:
    reader = StatusReader(["vacation"], [], [])
    assert reader.away_keyword("back from vacation") == "vacation"
    assert StatusReader([], ["palm_tree"], ["back"]).away_keyword("vacation") is None


def test_the_configuration_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = StatusReader(DEFAULTS.away_keywords, DEFAULTS.away_emojis, DEFAULTS.back_keywords)
    compiled: list[Any] = []
    real = re.compile
    monkeypatch.setattr(re, "compile", lambda *a, **k: compiled.append(a) or real(*a, **k))
    for message, emoji in [(row[1], row[2]) for row in TABLE] * 3:
        reader.availability(status(message, emoji))
    assert compiled == []


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("yaml_text", "field", "problem"),
    [
        ("roulette:\n  away_keywords: [ooo, '']\n", "roulette.away_keywords[1]", "''"),
        (
            "roulette:\n  back_keywords: ['back from', ' - ']\n",
            "roulette.back_keywords[1]",
            "' - '",
        ),
        ("roulette:\n  away_emojis: [palm_tree, '::']\n", "roulette.away_emojis[1]", "'::'"),
        ("roulette:\n  away_keywords: ooo\n", "roulette.away_keywords", "tuple"),
    ],
    ids=["empty away keyword", "blank back keyword", "empty emoji", "not a list"],
)
def test_a_bad_status_entry_is_refused_in_one_line(
    tmp_path: Path, yaml_text: str, field: str, problem: str
) -> None:
    path = tmp_path / "roulette.yaml"
    path.write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{field}: ")
    assert problem in message


def test_status_lists_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "roulette.yaml"
    path.write_text(
        "roulette:\n  away_keywords: [sabbatical]\n  back_keywords: []\n  away_emojis: [':x:']\n",
        encoding="utf-8",
    )
    roulette = load_settings(path).roulette
    assert roulette.away_keywords == ("sabbatical",)
    assert roulette.back_keywords == ()
    assert roulette.away_emojis == (":x:",)


def test_the_documented_defaults_are_the_defaults() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", docs, re.S) if "back_keywords" in b)
    documented = yaml.safe_load(block)["roulette"]
    assert tuple(documented["away_keywords"]) == DEFAULTS.away_keywords
    assert tuple(documented["back_keywords"]) == DEFAULTS.back_keywords
    assert tuple(documented["away_emojis"]) == DEFAULTS.away_emojis


# ---------------------------------------------------------------- through the service

REF = MergeRequestRef("acme/shop", 1)
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def org(migrated_url: Any, gitlab_url: str) -> Settings:
    roulette = {
        "away_keywords": [*DEFAULTS.away_keywords, "sabbatical"],
        "back_keywords": [*DEFAULTS.back_keywords, "fin de"],
    }
    return settings_for(
        migrated_url,
        teams=TEAMS,
        users=USERS,
        gitlab_url=gitlab_url,
        gitlab_token=TOKEN,
        roulette=roulette,
    )


@pytest.fixture
async def service(org: Settings, gitlab: GitLab) -> AsyncIterator[RouletteService]:
    engine = create_engine(org.async_database_url)
    sessions = create_sessionmaker(engine)
    await sync_organisation(sessions, org)
    yield RouletteService(org, sessions, MemoryCache(), gitlab)
    await engine.dispose()


async def test_statuses_read_through_the_service(
    service: RouletteService, standin: GitLabStandIn
) -> None:
    standin.set_status("bob", message="back from vacation")
    standin.set_status("carol", message="Out-of-office until Monday")
    standin.set_status("dave", message="En congés")
    standin.set_status("erin", message="Fin de sabbatical")
    standin.set_status("frank", message="Sabbatical - ask Alice")
    for _ in range(2):  # the second plan reads the statuses from the cache
        plan = await service.plan(REF, now=NOW, rng=random.Random(0))
        excluded = {e.username: (e.reason, str(e.detail)) for e in plan.selection.excluded}
        assert excluded["carol"] == ("away", "GitLab status message says 'out of office'")
        assert excluded["dave"] == ("away", "GitLab status message says 'en congés'")
        assert excluded["frank"] == ("away", "GitLab status message says 'sabbatical'")
        assert "bob" not in excluded
        assert "erin" not in excluded
        assert "bob" in plan.selection.reviewers


async def test_a_changed_or_damaged_cached_status_is_read_again(
    service: RouletteService, standin: GitLabStandIn
) -> None:
    """What a cached status text gives is remembered by the text: a new status (another
    text) is read afresh, and a text that is not JSON is a miss that GitLab answers."""
    people = [p for p in service.people() if p.username in ("carol", "dave")]
    for name in ("carol", "dave"):
        await service.cache.set_json(
            f"gl:status:{name}", {"availability": "not_set", "emoji": None, "message": None}
        )
    first = await service.availability(people, frozenset())
    assert {name: a.status for name, a in first.items()} == {
        "carol": "available",
        "dave": "available",
    }

    await service.cache.set_json(
        "gl:status:carol", {"availability": "not_set", "emoji": None, "message": "On PTO"}
    )
    await service.cache.set_json("gl:status:dave", {"availability": "busy"})
    second = await service.availability(people, frozenset())
    assert second["carol"].status == "away"
    assert second["dave"].status == "busy"

    assert isinstance(service.cache, MemoryCache)
    await service.cache._set("gl:status:carol", "{not json", None)
    standin.set_status("carol", availability="busy")
    third = await service.availability(people, frozenset())
    assert third["carol"].status == "busy"  # asked of GitLab, and cached again
    assert await service.cache.get_json("gl:status:carol") == {
        "availability": "busy",
        "emoji": None,
        "message": None,
    }
