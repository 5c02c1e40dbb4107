"""``digest:``: the daily digest's settings."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from bot.settings import AreaConfig

_HTTP_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


class DigestConfig(AreaConfig):
    """``personal``: also send each reviewer their own pending reviews as a direct message.
    ``webhooks``: team name -> Mattermost incoming-webhook URL (http or https); a team listed
    here gets its digest through that webhook instead of the bot account (the URL is a
    credential: it is never logged). ``warn_after_hours``: a review waiting longer than
    this many hours is marked with :warning:."""

    key: ClassVar[str] = "digest"

    personal: bool = False
    webhooks: dict[str, str] = {}
    warn_after_hours: int = Field(default=48, ge=1, le=24 * 365)

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: dict[str, str]) -> dict[str, str]:
        for team, url in value.items():
            if not team.strip():
                raise ValueError("a webhook needs a team name")
            if not _HTTP_URL.fullmatch(url):
                # The URL itself is a secret: name the team, not the value.
                raise ValueError(f"the webhook of team {team!r} is not an http(s) URL")
        return value

    def webhook(self, team: str) -> str | None:
        """The incoming-webhook URL of ``team`` (names compared case-insensitively)."""
        return next(
            (url for name, url in self.webhooks.items() if name.lower() == team.lower()), None
        )
