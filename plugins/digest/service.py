"""The digest's logic, free of transport: which reviews are pending, and their text.

A review is pending when its MR is open (neither merged nor closed), not approved
(``mr_reviews.approved_at`` is null) and has at least one active reviewer assignment. The
texts are Markdown for Mattermost, in the reader's language, oldest review first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from bot.chat import markdown_text
from bot.i18n import Gettext
from bot.reviews import PendingReview, Reviewer, pending_reviews

__all__ = ["PendingReview", "Reviewer", "by_team", "pending_reviews"]

WARNING = ":warning:"


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
    """A title safe inside Markdown link brackets, on one line, shown as typed: no
    emphasis, nested link or ``@channel`` mention of its own (``bot.chat.markdown_text``)."""
    return markdown_text(" ".join(title.split()))


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
        team=markdown_text(team),
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
