"""``handover:``: when a silent reviewer is nudged, and when their slot is handed over."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from bot.settings import AreaConfig


class HandoverConfig(AreaConfig):
    """``nudge_after``: working hours of the reviewer without an answer (no accept,
    comment or approval) before one DM reminder. ``reassign_after``: working hours before
    the slot is handed over to someone else, as a pass would; ``off`` (None) disables it.
    Working hours are the reviewer's own (their timezone, ``roulette.working_hours``, no
    weekends, no recorded out-of-office days)."""

    key: ClassVar[str] = "handover"

    nudge_after: float = Field(default=4, gt=0, le=24 * 30)
    reassign_after: float | None = Field(default=16, gt=0, le=24 * 90)

    @field_validator("reassign_after", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False.
        if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
            return None
        return value
