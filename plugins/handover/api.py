"""What other feature areas may ask the handover area: send a review request.

The roulette calls ``request_review`` for each new reviewer when the handover area is
enabled (instead of its plain DM). Nothing else of the area is public.
"""

from __future__ import annotations

from datetime import datetime

from bot.context import PluginContext
from bot.db import utcnow
from plugins.handover import messages, service


async def request_review(
    app: PluginContext,
    *,
    project_path: str,
    iid: int,
    title: str,
    web_url: str,
    author: str,
    reviewer: str,
    role_text: str,
) -> None:
    """Record a review request to ``reviewer`` (GitLab username) on the MR
    ``project_path!iid`` and DM them with **Accept**, **Pass** and **Snooze** buttons, in
    their language.

    ``author`` is the MR author's Mattermost username (shown as ``@author``); ``role_text``
    the role the reviewer was picked for: a roulette role code (``codeowner``, ``team``,
    ``external``) is translated for the reader, any other text shown as given. Without
    Mattermost the request is recorded only (the nudge and hand-over clock still runs).
    A DM that cannot be delivered is logged, never raised: the roulette is done anyway.
    """
    await send_request(
        app,
        project_path=project_path,
        iid=iid,
        title=title,
        web_url=web_url,
        author=author,
        reviewer=reviewer,
        role_text=role_text,
        now=utcnow(),
    )


async def send_request(
    app: PluginContext,
    *,
    project_path: str,
    iid: int,
    title: str,
    web_url: str,
    author: str,
    reviewer: str,
    role_text: str,
    now: datetime,
) -> None:
    """``request_review`` with the request's clock starting at ``now`` (the area's own
    clock, for the replacement of a hand-over)."""
    request_id = await service.record_request(
        app.sessions,
        project_path=project_path,
        iid=iid,
        reviewer=reviewer,
        title=title,
        web_url=web_url,
        author=author,
        role=role_text,
        now=now,
    )
    request = await service.get(app.sessions, request_id)
    if request is not None:
        await messages.send_request(app, request, nudge=False)
