"""The roulette's settings: the ``roulette:`` section of the configuration.

Validated at start with the rest of the settings (``bot.settings``); a bad value stops the
bot with one line naming the field (``roulette.weights.expertise: ...``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.settings import AreaConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Strict):
    active_review: float = 10
    recent_review: float = 5
    expertise: float = 2
    working_hours: float = 3  # bonus for people within their working hours right now


class WorkingHours(_Strict):
    start: int = Field(default=9, ge=0, le=23)
    end: int = Field(default=18, ge=1, le=24)

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


# What a GitLab status message says when its author is away today, and what cancels it.
# Matched as whole words, ignoring case, accents, hyphens, underscores and spacing (see
# docs/configuration.md, "GitLab status"); plurals are listed, not guessed.
AWAY_KEYWORDS = (
    "ooo",
    "out of office",
    "out of the office",
    "pto",
    "vacation",
    "vacations",
    "holiday",
    "holidays",
    "on leave",
    "parental leave",
    "maternity leave",
    "paternity leave",
    "sick leave",
    "annual leave",
    "sick",
    "absent",
    "absente",
    "congé",
    "congés",
    "en congé",
    "en congés",
    "vacances",
    "malade",
    "arrêt maladie",
    "rtt",
)
# A back keyword cancels the away keywords after it in the same clause.
BACK_KEYWORDS = (
    "back from",
    "returned",
    "not",
    "no longer",
    "de retour",
    "rentré de",
    "rentrée de",
    "revenu de",
    "revenue de",
    "pas en",
    "plus en",
)
AWAY_EMOJIS = (
    "palm_tree",
    "beach_umbrella",
    "umbrella_on_ground",
    "desert_island",
    "airplane",
    "face_with_thermometer",
    "thermometer",
    "sneezing_face",
    "red_circle",
)


def _status_phrase(value: str) -> str:
    """A status keyword must hold a word: one letter or digit at least."""
    if not re.search(r"[^\W_]", value):
        raise ValueError(f"{value!r} is not a word or phrase (it has no letter or digit)")
    return value


def _emoji_name(value: str) -> str:
    """An emoji name, with or without its colons (``palm_tree``, ``:palm_tree:``)."""
    if not value.strip().strip(":").strip():
        raise ValueError(f"{value!r} is not an emoji name")
    return value


StatusPhrase = Annotated[str, AfterValidator(_status_phrase)]
EmojiName = Annotated[str, AfterValidator(_emoji_name)]


class RouletteConfig(AreaConfig):
    """``roulette:``: how reviewers are picked and what the bot does with them."""

    key: ClassVar[str] = "roulette"

    reviewers: int = Field(default=3, ge=1, le=10)
    assign_in_gitlab: bool = True
    notify_reviewers: Literal["dm", "off"] = "dm"
    auto_roulette: Literal["off", "on_open"] = "off"
    weights: Weights = Weights()
    # Candidates within this many points of the best score are equals (random pick).
    margin: float = Field(default=0.0, ge=0)
    working_hours: WorkingHours = WorkingHours()
    # Trainees: only as an extra reviewer (default), like everyone else, or never.
    trainees: Literal["extra", "regular", "off"] = "extra"
    # With `trainees: extra`, the share of rolls (0 to 1) that may add a trainee of the MR's
    # team; a trainee above their team's median active load is skipped anyway.
    trainee_share: float = Field(default=0.5, ge=0, le=1)
    # GitLab status: a message with an away keyword (not cancelled by a back keyword
    # before it in its clause) or an away emoji makes its author unavailable.
    away_keywords: tuple[StatusPhrase, ...] = AWAY_KEYWORDS
    back_keywords: tuple[StatusPhrase, ...] = BACK_KEYWORDS
    away_emojis: tuple[EmojiName, ...] = AWAY_EMOJIS

    @field_validator("notify_reviewers", "auto_roulette", "trainees", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as False.
        return "off" if value is False else value
