"""The dashboard's logic, free of transport: members and teams by name, pending reviews
per team, the review-time charts (SVG) and the HTML page's environment.

Pending reviews are read from the core tables with the digest's definition: the MR is
open (not merged, not closed), not approved, and has at least one active assignment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import jinja2
import pygal
from pygal.style import Style
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import Team, User
from bot.reviews import pending_reviews

MAX_ID = 2**31 - 1  # users.id is INTEGER


@dataclass(frozen=True)
class Member:
    """A member of the organisation as the API shows them."""

    id: int
    username: str  # GitLab
    mattermost: str | None
    team: str | None
    role: str
    active: bool


async def find_member(session: AsyncSession, ref: str) -> Member | None:
    """The user whose id is ``ref`` (digits), else whose GitLab or Mattermost username it
    is (case-insensitive, a leading ``@`` allowed); None when there is none."""
    query = select(User, Team.name).outerjoin(Team, Team.id == User.team_id)
    if ref.isdecimal() and len(ref) <= 10 and int(ref) <= MAX_ID:
        query = query.where(User.id == int(ref))
    else:
        name = ref.strip().removeprefix("@").lower()
        query = query.where(
            or_(
                func.lower(User.gitlab_username) == name,
                func.lower(User.mattermost_username) == name,
            )
        ).order_by((func.lower(User.gitlab_username) == name).desc())
    row = (await session.execute(query.limit(1))).first()
    if row is None:
        return None
    user, team = row
    return Member(
        user.id, user.gitlab_username, user.mattermost_username, team, user.role, user.is_active
    )


async def find_team(session: AsyncSession, name: str) -> str | None:
    """The stored name of the team called ``name`` (case-insensitive), or None."""
    found = await session.scalar(select(Team.name).where(func.lower(Team.name) == name.lower()))
    return None if found is None else str(found)


async def team_names(session: AsyncSession) -> list[str]:
    """Every active team's name, sorted."""
    rows = await session.scalars(select(Team.name).where(Team.is_active.is_(True)))
    return sorted((str(name) for name in rows.all()), key=str.lower)


@dataclass(frozen=True)
class Pending:
    """One review waiting for its reviewers: ``waiting_hours`` since the trigger at ``now``;
    ``reviewers`` the active ones' Mattermost names (else GitLab), sorted."""

    title: str
    web_url: str
    author: str
    waiting_hours: float
    reviewers: tuple[str, ...]


@dataclass(frozen=True)
class TeamPending:
    """A team's pending reviews, oldest first (``team`` None: MRs without a team)."""

    team: str | None
    reviews: tuple[Pending, ...]


async def pending_by_team(session: AsyncSession, now: datetime) -> list[TeamPending]:
    """Pending reviews (``bot.reviews``: as the digest counts them) grouped by the MR's
    team, teams by name (those without a team last), oldest trigger first."""
    teams: dict[str | None, list[Pending]] = {}
    for review in await pending_reviews(session):
        triggered = review.triggered_at
        waiting = max(0.0, (now - triggered).total_seconds() / 3600) if triggered else 0.0
        names = tuple(sorted((r.mattermost for r in review.reviewers), key=str.lower))
        teams.setdefault(review.team, []).append(
            Pending(review.title, review.web_url, review.author, round(waiting, 1), names)
        )
    order = sorted(teams, key=lambda t: (t is None, (t or "").lower()))
    return [TeamPending(team, tuple(teams[team])) for team in order]


# --------------------------------------------------------------------------- charts

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    font_family="system-ui, sans-serif",
    colors=("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"),
)


@dataclass(frozen=True)
class Series:
    """One line of a chart: its label and a value (or None: no data) per x label."""

    label: str
    values: tuple[float | None, ...]


_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL)


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[Series], y_title: str) -> str:
    """An inline ``<svg>`` line chart drawn by pygal: no XML declaration, no script
    (pygal's default tooltips load JavaScript from its site; they are switched off), no
    network, no lxml; pygal's inline configuration script is removed too. Labels are
    escaped by the XML writer."""
    chart = pygal.Line(
        title=title,
        x_labels=list(x_labels),
        y_title=y_title,
        js=[],
        disable_xml_declaration=True,
        style=_STYLE,
        width=720,
        height=320,
        explicit_size=False,
        show_dots=True,
        dots_size=3,
        legend_at_bottom=True,
        truncate_legend=30,
        print_values=False,
        no_data_text="-",
        x_label_rotation=30,
    )
    for line in series:
        chart.add(line.label, list(line.values), allow_interruptions=True)
    # pygal still writes its inline configuration for the tooltips script (not loaded).
    return _SCRIPT.sub("", str(chart.render(is_unicode=True)))


# --------------------------------------------------------------------------- the page


@cache
def page_environment() -> jinja2.Environment:
    """The Jinja2 environment of the dashboard's HTML templates: autoescape on, so a
    username ``<script>`` shows as text."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("plugins.dashboard", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
