"""Reviews waiting for their reviewers, read from the core's tables.

A review is pending when its MR is open (neither merged nor closed), not approved
(``mr_reviews.approved_at`` is null) and has at least one active reviewer assignment.
The digest posts them to each team; the dashboard shows them. Both ask here, so the two
never disagree on what "pending" means.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.models import MrReview, ReviewerAssignment, Team, User


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
