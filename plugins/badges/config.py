"""The badges area's settings: the ``badges:`` list of extra or changed criteria.

``badges:`` is a list (empty by default: ``badges: []``). Each entry is one criterion,
``{name, metric, operator, value, period, min_reviews}`` with optional ``slug``,
``description`` and ``emoji``. An entry whose name (or slug) is a default badge's changes
that badge; any other adds one. Validated at start with the rest of the settings: a bad
entry stops the bot with one line naming it (``badges[1].operator: ...``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from bot.settings import Settings

#: What a criterion may test: the fields and properties of
#: ``plugins.metrics.api.ReviewerTotals`` (counts, hours, characters, points).
METRICS = (
    "reviews_completed",
    "reviews_other_teams",
    "comments",
    "avg_ttfr_hours",
    "avg_approval_hours",
    "avg_comments_per_review",
    "avg_comment_length",
    "engagement",
)
#: ``top``: among the N highest values of the period (ties share a place), N = ``value``.
OPERATORS = ("<", "<=", ">", ">=", "==", "top")
#: The span a badge is judged on and awarded for (``all``: since the first data).
PERIODS = ("day", "week", "month", "all")

Metric = Literal[
    "reviews_completed",
    "reviews_other_teams",
    "comments",
    "avg_ttfr_hours",
    "avg_approval_hours",
    "avg_comments_per_review",
    "avg_comment_length",
    "engagement",
]
Operator = Literal["<", "<=", ">", ">=", "==", "top"]
Period = Literal["day", "week", "month", "all"]

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def slugify(name: str) -> str:
    """``"Speed Demon"`` -> ``"speed-demon"`` (ASCII letters and digits, dashes)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:64]


class BadgeCriterion(BaseModel):
    """One badge definition: awarded to whoever's ``metric`` over the ``period`` passes
    ``operator value`` with at least ``min_reviews`` completed reviews.

    ``slug`` defaults to the name's (``Speed Demon`` -> ``speed-demon``). With ``top``,
    ``value`` is how many places earn it (a whole number, at least 1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    metric: Metric
    operator: Operator
    value: float
    period: Period = "month"
    min_reviews: int = Field(default=0, ge=0, le=100_000)
    # None: the default badge's own when the entry changes one, else empty / :medal:.
    description: str | None = Field(default=None, max_length=500)
    emoji: str | None = Field(default=None, max_length=64)

    slug: str | None = Field(default=None, validate_default=True)

    @field_validator("value")
    @classmethod
    def _value(cls, value: float, info: ValidationInfo) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if info.data.get("operator") == "top" and (value < 1 or value != int(value)):
            raise ValueError("with the operator top, a whole number of places (1 or more)")
        return value

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None, info: ValidationInfo) -> str:
        slug = value if value is not None else slugify(str(info.data.get("name", "")))
        if not _SLUG.fullmatch(slug):
            raise ValueError(
                f"{slug!r} is not a slug (lowercase letters, digits and dashes; from the name"
                " when not given)"
            )
        return slug

    @property
    def key(self) -> str:
        """The badge's slug (given, else derived from its name)."""
        return self.slug or slugify(self.name)

    def definition(self) -> dict[str, Any]:
        """The row's values (``badges`` columns), slug included."""
        return {
            "slug": self.key,
            "name": self.name,
            "description": self.description or "",
            "emoji": self.emoji or ":medal:",
            "metric": self.metric,
            "operator": self.operator,
            "value": float(self.value),
            "period": self.period,
            "min_reviews": self.min_reviews,
        }


class BadgesConfig(RootModel[tuple[BadgeCriterion, ...]]):
    """``badges:``: extra or changed criteria, in order; two entries may not share a slug."""

    key: ClassVar[str] = "badges"
    root: tuple[BadgeCriterion, ...] = ()

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: dict[str, int] = {}
        for i, criterion in enumerate(self.root):
            if criterion.key in seen:
                raise ValueError(
                    f"badges[{i}] defines the badge {criterion.key!r} again"
                    f" (already badges[{seen[criterion.key]}])"
                )
            seen[criterion.key] = i
        return self

    @classmethod
    def of(cls, settings: Settings) -> BadgesConfig:
        """The ``badges:`` section of ``settings`` (empty when absent)."""
        value = getattr(settings, cls.key, None)
        return value if isinstance(value, cls) else cls(())
