"""The selection engine: availability, scoring, slots, flags, explanation."""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.i18n import Message
from plugins.roulette.engine import (
    Availability,
    Load,
    MergeRequestFacts,
    Options,
    Person,
    Selection,
    Weights,
    select,
)
from plugins.roulette.simulate import synthetic_people

# A Wednesday, 10:00 UTC: within working hours in Paris and London, not in Tokyo (19:00)
# nor New York (05:00).
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

PEOPLE = [
    Person("alice", team="backend", role="maintainer", timezone="Europe/Paris"),
    Person("bob", team="backend"),
    Person("carol", team="backend"),
    Person("dave", team="frontend"),
    Person("erin", team="frontend"),
    Person("frank", team="platform"),
]


def mr(**changes: object) -> MergeRequestFacts:
    values: dict[str, object] = {"author": "alice", "team": "backend", "owners": frozenset()}
    values.update(changes)
    return MergeRequestFacts(**values)  # type: ignore[arg-type]


def run(
    facts: MergeRequestFacts,
    people: list[Person] = PEOPLE,
    availability: dict[str, Availability] | None = None,
    load: Load | None = None,
    seed: int = 0,
    **options: object,
) -> Selection:
    return select(
        facts,
        people,
        availability or {},
        load or Load(),
        Options(**options),  # type: ignore[arg-type]
        random.Random(seed),
        NOW,
    )


def roles(selection: Selection) -> dict[str, str]:
    return {p.username: p.role for p in selection.picks}


def test_one_reviewer_per_pool_in_order() -> None:
    selection = run(mr(owners=frozenset({"dave"})))
    assert [p.role for p in selection.picks] == ["codeowner", "team", "external"]
    assert selection.picks[0].username == "dave"
    assert selection.picks[1].username in {"bob", "carol"}
    assert selection.picks[2].username in {"erin", "frank"}
    assert selection.empty_pools == ()


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (Availability(ooo=True), "ooo"),
        (Availability(status="busy"), "busy"),
        (
            Availability(
                status="away", detail=Message("GitLab status emoji :{emoji}:", {"emoji": "x"})
            ),
            "away",
        ),
    ],
)
def test_unavailable_people_are_never_picked(state: Availability, reason: str) -> None:
    availability = {name: state for name in ("bob", "carol", "dave")}
    for seed in range(20):
        selection = run(mr(owners=frozenset({"bob"})), availability=availability, seed=seed)
        assert not {"alice", "bob", "carol", "dave"} & set(selection.reviewers)
    excluded = {e.username: e.reason for e in selection.excluded}
    assert excluded == {"alice": "author", "bob": reason, "carol": reason, "dave": reason}


def test_the_author_is_never_picked_even_as_owner() -> None:
    selection = run(mr(owners=frozenset({"alice"})))
    assert "alice" not in selection.reviewers
    assert selection.empty_pools == ("codeowner",)


def test_inactive_and_at_capacity_people_are_excluded() -> None:
    people = [*PEOPLE, Person("gone", team="backend", active=False)]
    people[1] = Person("bob", team="backend", max_active_reviews=2)
    selection = run(mr(), people=people, load=Load(active={"bob": 2}))
    excluded = {e.username: (e.reason, str(e.detail)) for e in selection.excluded}
    assert excluded["gone"][0] == "inactive"
    assert excluded["bob"] == ("capacity", "2 active reviews, at most 2")
    assert roles(selection)["carol"] == "team"


def test_an_empty_pool_is_reported_and_other_slots_still_filled() -> None:
    selection = run(mr(owners=frozenset()))
    assert selection.empty_pools == ("codeowner",)
    assert [p.role for p in selection.picks] == ["team", "external"]


def test_an_mr_without_team_has_no_team_pool() -> None:
    selection = run(mr(team=None, owners=frozenset({"dave"})))
    assert selection.empty_pools == ("team",)
    assert [p.role for p in selection.picks] == ["codeowner", "external"]


def test_reviewers_are_distinct_and_at_most_the_configured_count() -> None:
    owners = frozenset({"bob", "carol", "dave", "erin", "frank"})
    for seed in range(50):
        for count in (1, 2, 3, 5):
            selection = run(mr(owners=owners), seed=seed, reviewers=count)
            assert len(selection.reviewers) == len(set(selection.reviewers)) <= count


def test_more_slots_than_pools_are_filled_from_anyone() -> None:
    selection = run(mr(owners=frozenset({"dave"})), reviewers=5)
    assert len(selection.picks) == 5
    assert "alice" not in selection.reviewers


def test_active_reviews_weigh_against_a_candidate() -> None:
    load = Load(active={"bob": 1})
    picked = Counter(run(mr(), load=load, seed=s).picks[0].username for s in range(30))
    assert picked == {"carol": 30}
    # ...unless the weight says load does not matter.
    weights = Weights(active_review=0, working_hours=0)
    picked = Counter(
        run(mr(), load=load, seed=s, weights=weights).picks[0].username for s in range(60)
    )
    assert set(picked) == {"bob", "carol"}


def test_the_recent_review_penalty_and_force() -> None:
    load = Load(recent=frozenset({"bob"}))
    assert {run(mr(), load=load, seed=s).picks[0].username for s in range(20)} == {"carol"}
    forced = {run(mr(), load=load, seed=s, force=True).picks[0].username for s in range(40)}
    assert forced == {"bob", "carol"}


def test_score_components_follow_the_spec_formula() -> None:
    selection = run(
        mr(owners=frozenset({"bob"})),
        load=Load(active={"bob": 2}, recent=frozenset({"bob"})),
        weights=Weights(active_review=10, recent_review=5, expertise=2, working_hours=0),
    )
    bob = next(c for c in selection.candidates if c.username == "bob")
    assert bob.components["active_review"] == -20
    assert bob.components["recent_review"] == -5
    assert bob.components["expertise"] == 2
    assert bob.score == 100 - 20 - 5 + 2


def test_working_hours_are_preferred_but_not_required() -> None:
    people = [
        Person("author", team="x"),
        Person("paris", team="y", timezone="Europe/Paris"),
        Person("tokyo", team="y", timezone="Asia/Tokyo"),
    ]
    facts = MergeRequestFacts(author="author", team="x")
    picks = {run(facts, people=people, seed=s).picks[0].username for s in range(20)}
    assert picks == {"paris"}
    # When nobody is within their hours, others are picked anyway.
    away = {"paris": Availability(ooo=True)}
    assert run(facts, people=people, availability=away).reviewers == ("tokyo",)


def test_equals_share_the_load() -> None:
    picks = Counter(run(mr(), seed=s).picks[0].username for s in range(200))
    assert set(picks) == {"bob", "carol"}
    assert min(picks.values()) > 60


def test_the_margin_makes_near_equals_equal() -> None:
    load = Load(recent=frozenset({"bob"}))  # bob 5 points behind carol
    strict = {run(mr(), load=load, seed=s).picks[0].username for s in range(30)}
    loose = {run(mr(), load=load, seed=s, margin=5).picks[0].username for s in range(60)}
    assert strict == {"carol"} and loose == {"bob", "carol"}


def test_trainees_are_only_an_extra_reviewer_by_default() -> None:
    people = [*PEOPLE, Person("tina", team="backend", role="trainee")]
    selection = run(mr(owners=frozenset({"tina"})), people=people, trainee_share=1.0)
    regular = [p for p in selection.picks if not p.extra]
    extra = [p for p in selection.picks if p.extra]
    assert "tina" not in {p.username for p in regular}
    assert [(p.username, p.role) for p in extra] == [("tina", "team")]
    assert selection.empty_pools == ("codeowner",)
    off = run(mr(), people=people, trainees="off")
    assert "tina" not in off.reviewers
    assert ("tina", "trainee") in {(e.username, e.reason) for e in off.excluded}
    regular_mode = run(mr(owners=frozenset({"tina"})), people=people, trainees="regular")
    assert roles(regular_mode)["tina"] == "codeowner"


TRAINEES = [
    *PEOPLE,
    Person("tina", team="backend", role="trainee"),
    Person("tom", team="frontend", role="trainee"),
]


def extra(selection: Selection) -> list[str]:
    return [p.username for p in selection.picks if p.extra]


def test_an_extra_trainee_comes_on_the_configured_share_of_rolls() -> None:
    def rolls(share: float) -> int:
        return sum(
            bool(extra(run(mr(), people=TRAINEES, seed=s, trainee_share=share))) for s in range(200)
        )

    assert rolls(0.0) == 0
    assert rolls(1.0) == 200
    assert 80 <= rolls(0.5) <= 120
    # The draw is the roll's: the same seed, the same answer.
    assert run(mr(), people=TRAINEES, seed=5) == run(mr(), people=TRAINEES, seed=5)


def test_a_trainee_above_the_team_median_load_is_skipped() -> None:
    # Backend's available regular reviewers: bob 1, carol 1 (alice wrote the MR): median 1.
    busy = Load(active={"bob": 1, "carol": 1, "tina": 2})
    for seed in range(30):
        assert extra(run(mr(), people=TRAINEES, load=busy, seed=seed, trainee_share=1.0)) == []
    at_median = Load(active={"bob": 1, "carol": 1, "tina": 1})
    selection = run(mr(), people=TRAINEES, load=at_median, trainee_share=1.0)
    assert extra(selection) == ["tina"]
    # The least loaded of two trainees comes first.
    two = [*TRAINEES, Person("tess", team="backend", role="trainee")]
    uneven = Load(active={"tina": 1})
    for seed in range(20):
        picked = run(mr(), people=two, load=uneven, seed=seed, trainee_share=1.0)
        assert extra(picked) == ["tess"]


def test_the_extra_trainee_comes_only_from_the_mrs_team() -> None:
    for seed in range(40):
        backend = run(mr(), people=TRAINEES, seed=seed, trainee_share=1.0)
        assert extra(backend) == ["tina"]
        assert [p.role for p in backend.picks if p.extra] == ["team"]
        # Tina is away: frontend's trainee is not brought in instead.
        away = {"tina": Availability(ooo=True)}
        assert extra(run(mr(), TRAINEES, away, seed=seed, trainee_share=1.0)) == []
        # An MR without a team gets no trainee at all.
        assert extra(run(mr(team=None), people=TRAINEES, seed=seed, trainee_share=1.0)) == []


def test_a_reroll_never_brings_in_another_teams_trainee() -> None:
    facts = mr(current_reviewers=("bob", "dave", "tina"), responded=frozenset({"bob"}))
    for seed in range(40):
        selection = run(facts, people=TRAINEES, seed=seed, reroll=True, trainee_share=1.0)
        assert "tom" not in selection.reviewers
        assert "tina" not in selection.reviewers  # replaced: she had not answered
        assert extra(selection) == []  # backend has no other trainee
        assert [p.role for p in selection.picks] == ["team", "external"]


def test_a_trainee_already_on_the_mr_stays_the_extra_trainee() -> None:
    facts = mr(current_reviewers=("bob", "tina"), responded=frozenset({"tina"}))
    for reroll in (False, True):
        selection = run(facts, people=TRAINEES, reroll=reroll, trainee_share=1.0)
        tina = [p for p in selection.picks if p.username == "tina"]
        assert [(p.kept, p.extra, p.role) for p in tina] == [(True, True, "team")]
        # ...beside the regular reviewers (no code owner here), and no second trainee.
        assert [p.role for p in selection.picks if not p.extra] == ["team", "external"]
        assert extra(selection) == ["tina"]


def test_over_120_rolls_trainees_carry_the_load_of_their_colleagues() -> None:
    """The default configuration over seeded streams of 120 merge requests, each review
    open for 2 to 12 rolls: each trainee's assignments fall within the regular reviewers'
    range (widened by a stated tolerance of 2, the binomial noise of a 0.5 share over ~30
    rolls of one team), never at the team's highest load while a colleague is free."""
    tolerance = 2
    for seed in range(5):
        rng = random.Random(seed)
        people = synthetic_people(random.Random(seed))
        regulars = [p for p in people if p.role != "trainee"]
        active: Counter[str] = Counter()
        ending: defaultdict[int, list[str]] = defaultdict(list)
        assignments: Counter[str] = Counter()
        for roll in range(120):
            for name in ending.pop(roll, []):
                active[name] -= 1
            author = rng.choice(regulars)
            facts = MergeRequestFacts(author=author.username, team=author.team)
            selection = select(facts, people, {}, Load(active=dict(active)), Options(), rng, NOW)
            team = [p.username for p in regulars if p.team == author.team and p != author]
            for pick in selection.picks:
                if pick.extra:
                    assert pick.active_reviews <= statistics.median(active[n] for n in team)
                    if any(active[n] == 0 for n in team):  # a colleague is free
                        assert pick.active_reviews == 0 or pick.active_reviews < max(
                            active[n] for n in team
                        )
                assignments[pick.username] += 1
                active[pick.username] += 1
                ending[roll + rng.randint(2, 12)].append(pick.username)
        counts = [assignments[p.username] for p in regulars]
        low, high = min(counts) - tolerance, max(counts) + tolerance
        trainees = {p.username: assignments[p.username] for p in people if p.role == "trainee"}
        assert all(low <= n <= high for n in trainees.values()), (seed, low, high, trainees)


def test_existing_reviewers_fill_their_slots() -> None:
    facts = mr(owners=frozenset({"dave"}), current_reviewers=("dave", "bob"))
    selection = run(facts)
    kept = [(p.username, p.role) for p in selection.picks if p.kept]
    assert kept == [("dave", "codeowner"), ("bob", "team")]
    assert [p.role for p in selection.picks if not p.kept] == ["external"]
    # --force starts again from scratch.
    forced = run(facts, force=True)
    assert not any(p.kept for p in forced.picks)
    assert len(forced.picks) == 3


def test_reroll_replaces_who_has_not_answered() -> None:
    facts = mr(
        owners=frozenset({"dave", "erin"}),
        current_reviewers=("dave", "bob", "frank"),
        responded=frozenset({"bob"}),
    )
    selection = run(facts, reroll=True)
    assert [(p.username, p.kept) for p in selection.picks if p.kept] == [("bob", True)]
    assert not {"dave", "frank"} & set(selection.reviewers)
    assert roles(selection)["erin"] == "codeowner"
    assert {e.username for e in selection.excluded if e.reason == "rerolled"} == {"dave", "frank"}


def test_include_and_exclude() -> None:
    selection = run(mr(), include=("@frank",), exclude=("bob",))
    assert roles(selection)["frank"] == "external"
    assert selection.picks[0].included
    assert "bob" not in selection.reviewers
    assert ("bob", "excluded") in {(e.username, e.reason) for e in selection.excluded}


def test_include_never_overrides_unavailability() -> None:
    selection = run(mr(), include=("dave", "nobody"), availability={"dave": Availability(ooo=True)})
    assert "dave" not in selection.reviewers
    assert "@dave cannot be included (ooo: out of office today)." in selection.notes
    assert "@nobody cannot be included (not in the organisation)." in selection.notes


def test_no_codeowner_skips_the_code_owner_slot() -> None:
    selection = run(mr(owners=frozenset({"dave"})), no_codeowner=True)
    assert "codeowner" not in {p.role for p in selection.picks}
    assert selection.empty_pools == ()


def test_drafts_still_answer_and_say_so() -> None:
    selection = run(mr(draft=True))
    assert selection.picks
    assert "This merge request is still a draft." in selection.notes


def test_a_failed_status_check_counts_as_available_and_says_so() -> None:
    failed = Message("GitLab status check failed")
    unknown = {"bob": Availability(status="unknown", detail=failed)}
    selection = run(mr(), availability=unknown, reviewers=5)
    assert "bob" in selection.reviewers
    assert "@bob: GitLab status check failed; counted as available." in selection.notes


def test_explanation_lists_everyone() -> None:
    selection = run(
        mr(owners=frozenset({"dave", "zoe"})), availability={"erin": Availability(ooo=True)}
    )
    explained = {c.username for c in selection.candidates} | {
        e.username for e in selection.excluded
    }
    assert explained == {p.username for p in PEOPLE}
    assert selection.owners == ("dave", "zoe")
    assert [c.score for c in selection.candidates] == sorted(
        (c.score for c in selection.candidates), reverse=True
    )


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    unavailable=st.sets(st.sampled_from([p.username for p in PEOPLE])),
    owners=st.sets(st.sampled_from([p.username for p in PEOPLE])),
    author=st.sampled_from([p.username for p in PEOPLE]),
    count=st.integers(1, 6),
)
def test_property_never_unavailable_never_twice(
    seed: int, unavailable: set[str], owners: set[str], author: str, count: int
) -> None:
    availability = {name: Availability(status="busy") for name in unavailable}
    selection = run(
        mr(author=author, owners=frozenset(owners)),
        availability=availability,
        seed=seed,
        reviewers=count,
    )
    picked = selection.reviewers
    assert len(picked) == len(set(picked)) <= count
    assert author not in picked
    assert not unavailable & set(picked)
    for pick in selection.picks:
        if pick.role == "codeowner":
            assert pick.username in owners
