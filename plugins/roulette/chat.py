"""The roulette's answers in Mattermost, in the reader's language."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.chat import markdown_text
from bot.gitlab import MergeRequestInfo
from bot.i18n import Gettext
from plugins.roulette.engine import Exclusion, Pick, Pool, Reason
from plugins.roulette.service import Plan

CHAT_USAGE = (
    "/roulette MR_URL [reroll] [--explain] [--force] [--no-codeowner] "
    "[--include @user] [--exclude @user]"
)


def role_name(role: Pool, _: Gettext) -> str:
    """A pool's name in ``_``'s language ("code owner" for ``codeowner``); only the one
    asked for is translated (a note names a pool for every candidate)."""
    match role:
        case "codeowner":
            return _("code owner")
        case "team":
            return _("team member")
        case "external":
            return _("external")
    raise KeyError(role)


def reason_label(reason: Reason, _: Gettext) -> str:
    """Why someone was not picked, as a short label in ``_``'s language ("busy",
    "occupé"); ``reason`` is the engine's code (``pick --json`` keeps the codes)."""
    labels: dict[Reason, str] = {
        "author": _("author"),
        "inactive": _("inactive"),
        "ooo": _("out of office"),
        "busy": _("busy"),
        "away": _("away"),
        "capacity": _("at capacity"),
        "excluded": _("excluded"),
        "rerolled": _("replaced"),
        "trainee": _("trainee"),
    }
    return labels[reason]


def exclusion_line(name: str, exclusion: Exclusion, _: Gettext) -> str:
    """``--explain``'s line for someone not picked, in chat and in the GitLab note alike
    (both renderers call this): ``name`` as the place shows it ("~~@bob~~", "@bob"), then
    the translated reason label and detail: "@bob: busy (GitLab status is busy)"."""
    return _(
        "{name}: {reason} ({detail})",
        name=name,
        reason=reason_label(exclusion.reason, _),
        detail=_.render(exclusion.detail),
    )


def component_name(component: str, _: Gettext) -> str:
    """A score component's name in ``_``'s language ("working hours" for
    ``working_hours``); an unknown one as it is, underscores read as spaces."""
    match component:
        case "active_review":
            return _("active review")
        case "recent_review":
            return _("recent review")
        case "expertise":
            return _("expertise")
        case "working_hours":
            return _("working hours")
    return component.replace("_", " ")


def pick_marks(pick: Pick, _: Gettext) -> str:
    """What follows a reviewer's line, in chat and in the GitLab note alike (both renderers
    call this): "(extra, learning)" for a trainee added beside the regular picks, "(already
    a reviewer)" for one kept from before; "" when neither applies."""
    marks = []
    if pick.extra:
        marks.append(_("(extra, learning)"))
    if pick.kept:
        marks.append(_("(already a reviewer)"))
    return " ".join(marks)


def reviewer_dm(mr: MergeRequestInfo, pick: Pick, author: str, _: Gettext) -> str:
    """The direct message telling a new reviewer they were picked, in ``_``'s language;
    ``author`` is the MR author's Mattermost username. The role carries the same marks as
    the chat answer and the GitLab note ("as team member (extra, learning)")."""
    role = " ".join(part for part in (role_name(pick.role, _), pick_marks(pick, _)) if part)
    return _(
        "You were picked to review [{title}]({url}) by @{author}, as {role}.",
        title=markdown_text(mr.title),
        url=mr.web_url,
        author=author,
        role=role,
    )


def relative_time(seconds: float, _: Gettext) -> str:
    """ "in about 6 h", "in about 40 min", "in about 3 days": ``seconds`` from now, rounded
    (minutes under an hour, at least 1; hours under two days; days beyond)."""
    if seconds < 3600:
        return _("in about {count} min", count=max(1, round(seconds / 60)))
    if seconds < 48 * 3600:
        return _("in about {count} h", count=round(seconds / 3600))
    days = round(seconds / 86400)
    return _.ngettext("in about {count} day", "in about {count} days", days, count=days)


def back_text(back: datetime, now: datetime, _: Gettext) -> str:
    """When a reviewer who is not at work now is next at work, in ``_``'s language:
    "back at 09:00 Europe/Paris, in about 6 h" within a day, else "back on 2026-03-16 at
    09:00 Europe/Paris, in about 3 days". ``back`` is aware, in the reviewer's timezone
    (``worktime.next_at_work``), ``now`` aware. Never why they are away."""
    zone = str(back.tzinfo or "UTC")
    relative = relative_time((back - now).total_seconds(), _)
    at = back.strftime("%H:%M")
    if (back - now).total_seconds() < 24 * 3600:
        return _("back at {time} {zone}, {relative}", time=at, zone=zone, relative=relative)
    return _(
        "back on {date} at {time} {zone}, {relative}",
        date=back.date().isoformat(),
        time=at,
        zone=zone,
        relative=relative,
    )


def pick_back(plan: Plan, pick: Pick, _: Gettext) -> str:
    """ "back at 09:00 Europe/Paris, in about 6 h" for a picked reviewer who is not at work
    when the plan was made; "" for one at work (or a plan without that knowledge)."""
    back = plan.back(pick.username)
    if back is None or plan.planned_at is None:
        return ""
    return back_text(back, plan.planned_at, _)


def empty_pool(pool: Pool, _: Gettext) -> str:
    texts = {
        "codeowner": _("no available code owner for these files"),
        "team": _("no available member of the MR's team"),
        "external": _("no available reviewer outside the MR's team"),
    }
    return texts[pool]


def chat_usage(_: Gettext) -> str:
    return "\n".join(
        [
            _("**Reviewer roulette** picks reviewers for a GitLab merge request."),
            f"`{CHAT_USAGE}`",
            _("- `--explain`: every candidate's score and why"),
            _("- `--force`: ignore recent reviews and the reviewers already set"),
            _("- `--include @user` / `--exclude @user`: ask for / leave out someone"),
            _("- `--no-codeowner`: no code-owner slot"),
            _("- `reroll`: replace the reviewers who have not answered yet"),
        ]
    )


def chat_reply(
    plan: Plan, _: Gettext, mattermost_name: Callable[[str], str], *, explain: bool
) -> str:
    """The in-channel answer: reviewers as Mattermost mentions, the MR linked."""
    mr, selection = plan.mr, plan.selection
    link = f"[{mr.project_path}!{mr.iid} {markdown_text(mr.title)}]({mr.web_url})"
    lines = []
    if mr.draft:
        lines.append(_(":construction: This merge request is still a draft."))
    if selection.picks:
        lines.append(_(":game_die: Reviewers for {mr}:", mr=link))
        for pick in selection.picks:
            marks = pick_marks(pick, _)
            back = pick_back(plan, pick, _)
            lines.append(
                "- "
                + _.ngettext(
                    "@{name}: {role}, {count} active review",
                    "@{name}: {role}, {count} active reviews",
                    pick.active_reviews,
                    name=mattermost_name(pick.username),
                    role=role_name(pick.role, _),
                    count=pick.active_reviews,
                )
                + (f" {marks}" if marks else "")
                + (f" — {back}" if back else "")
            )
    else:
        lines.append(_(":warning: Nobody is available to review {mr} right now.", mr=link))
    lines += [f"- _{empty_pool(pool, _)}_" for pool in selection.empty_pools]
    lines += [f"> {problem}" for problem in plan.problems]
    if explain:
        lines.append("")
        lines.append(_("Candidates (best first):"))
        for c in selection.candidates:
            lines.append(f"- @{mattermost_name(c.username)}: {c.score:.1f}")
        for e in selection.excluded:
            lines.append("- " + exclusion_line(f"~~@{mattermost_name(e.username)}~~", e, _))
    return "\n".join(lines)
