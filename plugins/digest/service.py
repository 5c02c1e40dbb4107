"""The digest's logic, free of transport: which reviews are pending, and their text.

A review is pending when its MR is open (neither merged nor closed), not approved
(``mr_reviews.approved_at`` is null) and has at least one active reviewer assignment. The
texts are Markdown for Mattermost, in the reader's language, oldest review first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.i18n import Gettext
from bot.models import MrReview, ReviewerAssignment, Team, User

WARNING = ":warning:"


@dataclass(frozen=True)
class Reviewer:
    """An active reviewer: GitLab username and the Mattermost one (else the GitLab one)."""

    gitlab: str
    mattermost: str


@dataclass(frozen=True)
class PendingReview:
    """One MR waiting for its reviewers. ``team``: the MR's team name (None without one);
    ``author``: the author's Mattermost name when known, else their GitLab username;
    ``triggered_at``: when reviewers were asked (UTC); ``reviewers``: sorted by name."""

    review_id: int
    team: str | None
    title: str
    web_url: str
    author: str
    triggered_at: datetime
    reviewers: tuple[Reviewer, ...]


async def pending_reviews(session: AsyncSession) -> list[PendingReview]:
    """Every pending review (see the module), oldest trigger first (then by id).

    One query over ``mr_reviews``, its team, its author and its active assignments; the
    rows (one per active reviewer) are grouped into reviews here.
    """
    author = aliased(User)
    reviewer = aliased(User)
    rows = await session.execute(
        select(
            MrReview.id,
            Team.name,
            MrReview.title,
            MrReview.web_url,
            func.coalesce(author.mattermost_username, MrReview.author_username),
            MrReview.triggered_at,
            reviewer.gitlab_username,
            func.coalesce(reviewer.mattermost_username, reviewer.gitlab_username),
        )
        .join(ReviewerAssignment, ReviewerAssignment.review_id == MrReview.id)
        .join(reviewer, reviewer.id == ReviewerAssignment.user_id)
        .outerjoin(Team, Team.id == MrReview.team_id)
        .outerjoin(author, author.id == MrReview.author_id)
        .where(
            MrReview.state == "open",
            MrReview.approved_at.is_(None),
            MrReview.merged_at.is_(None),
            MrReview.closed_at.is_(None),
            ReviewerAssignment.status == "active",
        )
        .order_by(MrReview.triggered_at, MrReview.id, reviewer.gitlab_username)
    )
    reviews: dict[int, PendingReview] = {}
    for review_id, team, title, url, author_name, triggered, gitlab, mattermost in rows:
        found = reviews.get(review_id)
        one = Reviewer(gitlab, mattermost)
        if found is None:
            reviews[review_id] = PendingReview(
                review_id, team, title or url, url, author_name, triggered, (one,)
            )
        else:
            reviews[review_id] = replace(found, reviewers=(*found.reviewers, one))
    return list(reviews.values())


def by_team(reviews: Iterable[PendingReview]) -> dict[str, list[PendingReview]]:
    """Pending reviews by lowercased team name (reviews of no team left out), order kept."""
    grouped: dict[str, list[PendingReview]] = {}
    for review in reviews:
        if review.team is not None:
            grouped.setdefault(review.team.lower(), []).append(review)
    return grouped


def by_reviewer(reviews: Iterable[PendingReview]) -> dict[str, list[PendingReview]]:
    """Pending reviews by the reviewer's Mattermost name, order kept (personal digests)."""
    grouped: dict[str, list[PendingReview]] = {}
    for review in reviews:
        for reviewer in review.reviewers:
            grouped.setdefault(reviewer.mattermost, []).append(review)
    return grouped


def age(delta: timedelta, _: Gettext) -> str:
    """A waiting time as "3 d 4 h" ("5 h" under a day; "0 h" under an hour, or negative)."""
    hours = max(int(delta.total_seconds() // 3600), 0)
    days, hours = divmod(hours, 24)
    if days:
        return _("{days} d {hours} h", days=days, hours=hours)
    return _("{hours} h", hours=hours)


def _link_text(title: str) -> str:
    """A title safe inside Markdown link brackets, on one line."""
    flat = " ".join(title.split())
    return flat.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def review_line(review: PendingReview, now: datetime, warn_after: timedelta, _: Gettext) -> str:
    """One Markdown list item: warning mark past ``warn_after``, the linked title, the
    author, the reviewers mentioned by their Mattermost names, the waiting time."""
    waited = now - review.triggered_at
    mark = f"{WARNING} " if waited > warn_after else ""
    reviewers = ", ".join(f"@{r.mattermost}" for r in review.reviewers)
    text = _(
        "[{title}]({url}) by {author}, waiting for {reviewers} for {age}",
        title=_link_text(review.title),
        url=review.web_url,
        author=review.author,
        reviewers=reviewers,
        age=age(waited, _),
    )
    return f"- {mark}{text}"


def team_digest(
    team: str,
    reviews: Sequence[PendingReview],
    now: datetime,
    warn_after: timedelta,
    _: Gettext,
) -> str | None:
    """The digest posted in ``team``'s channel, or None when nothing is pending."""
    if not reviews:
        return None
    count = len(reviews)
    heading = _.ngettext(
        "**{count} merge request waiting for review in {team}**",
        "**{count} merge requests waiting for review in {team}**",
        count,
        count=count,
        team=team,
    )
    return "\n".join([heading, "", *(review_line(r, now, warn_after, _) for r in reviews)])


def personal_digest(
    reviews: Sequence[PendingReview], now: datetime, warn_after: timedelta, _: Gettext
) -> str | None:
    """The direct message listing one reviewer's own pending reviews, or None."""
    if not reviews:
        return None
    count = len(reviews)
    heading = _.ngettext(
        "**You have {count} review waiting for you**",
        "**You have {count} reviews waiting for you**",
        count,
        count=count,
    )
    return "\n".join([heading, "", *(review_line(r, now, warn_after, _) for r in reviews)])
