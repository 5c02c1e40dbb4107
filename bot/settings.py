"""Typed settings, read once: defaults < YAML file (with ``${VAR:default}``) < environment.

``load_settings`` is the only entry point. Every problem with the configuration is
raised as one ``ConfigError`` whose message is a single line naming the field and the
problem, so that every command can print it and exit 2.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

CONFIG_ENV_VAR = "ROULETTE_CONFIG"
DEFAULT_DATABASE_URL = "sqlite:///./roulette.db"


class ConfigError(Exception):
    """The configuration is unusable; the message is one line: ``field: problem``."""


# --------------------------------------------------------------------------- organisation


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Role = Literal["maintainer", "reviewer", "trainee"]


class TeamConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    labels: tuple[str, ...] = ()
    channel: str | None = None
    gitlab_group: str | None = None


class UserConfig(_Strict):
    gitlab: str = Field(min_length=1, max_length=255)
    mattermost: str | None = None
    team: str | None = None
    role: Role = "reviewer"
    timezone: str | None = None
    email: str | None = None
    max_active_reviews: int | None = Field(default=None, ge=1)

    @field_validator("gitlab", "mattermost")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().removeprefix("@")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
            raise ValueError(f"{value!r} is not a valid username")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @property
    def mattermost_username(self) -> str:
        return self.mattermost or self.gitlab


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


class RouletteConfig(_Strict):
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


class ScheduleConfig(_Strict):
    digest: str = "0 9 * * 1-5"
    aggregate: str = "0 2 * * *"
    badges: str = "0 9 * * *"

    @field_validator("digest", "aggregate", "badges")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as e:
            raise ValueError(f"bad cron expression {value!r} ({e})") from None
        return value


# --------------------------------------------------------------------------- settings


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[SecretStr], NoDecode]


class Settings(BaseSettings):
    """Everything the bot reads from its environment and its YAML file."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: SecretStr | None = None
    http_host: str = "0.0.0.0"  # noqa: S104 - the bot is a server
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = "http://localhost:8080"

    gitlab_url: str | None = None
    gitlab_token: SecretStr | None = None
    gitlab_webhook_secret: SecretStr | None = None
    gitlab_webhook_signing_token: SecretStr | None = None
    api_tokens: CommaList = []

    mattermost_url: str | None = None
    mattermost_token: SecretStr | None = None
    mattermost_team: str | None = None
    mattermost_command_tokens: CommaList = []
    # The most runes one post may hold; unset: what the server says (``MaxPostSize``),
    # else 16,383 (4,000 before Mattermost 5.0). Every chat answer is kept within it.
    mattermost_post_limit: int | None = Field(default=None, ge=100, le=65535)
    # Seconds between the websocket pings the bot sends; a missing pong (after half of
    # it) is a dead connection. A quiet server is not one: Mattermost may say nothing
    # for minutes.
    mattermost_heartbeat_seconds: float = Field(default=30.0, gt=0, le=300)

    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "console"] = "json"
    shutdown_timeout: float = Field(default=8.0, gt=0, le=60)
    # The webhook inbox: concurrent workers, attempts before a delivery is dead-lettered,
    # the first retry delay (doubling after each failure), how long a claim on a delivery
    # lasts unless its worker renews it (every third of it, while the handler runs: a
    # crashed worker's deliveries are taken over that long after its last renewal), and
    # how long a handler may run before it is cancelled and the attempt counted as failed.
    webhook_workers: int = Field(default=2, ge=1, le=64)
    webhook_max_attempts: int = Field(default=5, ge=1, le=50)
    webhook_retry_seconds: float = Field(default=2.0, gt=0, le=3600)
    webhook_lease_seconds: float = Field(default=20.0, ge=1, le=600)
    webhook_handler_timeout: float = Field(default=120.0, gt=0, le=3600)

    teams: tuple[TeamConfig, ...] = ()
    users: tuple[UserConfig, ...] = ()
    roulette: RouletteConfig = RouletteConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    locale: Literal["en", "fr"] = "en"

    @field_validator("api_tokens", "mattermost_command_tokens", mode="before")
    @classmethod
    def _commas(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        parse_database_url(value)
        return value

    @field_validator("gitlab_url", "mattermost_url", mode="before")
    @classmethod
    def _optional_url(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("gitlab_url", "mattermost_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return None if value is None else value.rstrip("/")

    @field_validator("gitlab_webhook_signing_token")
    @classmethod
    def _signing_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks token starting with whsec_")
        return value

    @model_validator(mode="after")
    def _organisation(self) -> Settings:
        teams: dict[str, int] = {}
        for i, team in enumerate(self.teams):
            key = team.name.lower()
            if key in teams:
                raise ValueError(f"teams[{i}].name: duplicate team {team.name!r}")
            teams[key] = i
        seen: dict[str, tuple[str, int]] = {}
        for i, user in enumerate(self.users):
            if user.team is not None and user.team.lower() not in teams:
                raise ValueError(f"users[{i}].team: unknown team {user.team!r}")
            for kind, name in (("gitlab", user.gitlab), ("mattermost", user.mattermost_username)):
                key = f"{kind}:{name.lower()}"
                if key in seen:
                    raise ValueError(
                        f"users[{i}].{kind}: duplicate username {name!r}"
                        f" (also users[{seen[key][1]}])"
                    )
                seen[key] = (name, i)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the YAML file, which is passed as init kwargs.
        return (env_settings, init_settings)

    # ----------------------------------------------------------------- derived values

    @property
    def async_database_url(self) -> URL:
        return async_url(parse_database_url(self.database_url))

    @property
    def sync_database_url(self) -> URL:
        return sync_url(parse_database_url(self.database_url))

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for the log masker."""
        values: list[SecretStr | None] = [
            self.redis_url,
            self.gitlab_token,
            self.gitlab_webhook_secret,
            self.gitlab_webhook_signing_token,
            self.mattermost_token,
            *self.api_tokens,
            *self.mattermost_command_tokens,
        ]
        found = [v.get_secret_value() for v in values if v is not None]
        password = parse_database_url(self.database_url).password
        if password:
            found.append(str(password))
        return found

    def team(self, name: str) -> TeamConfig | None:
        return next((t for t in self.teams if t.name.lower() == name.lower()), None)


# --------------------------------------------------------------------------- database URLs


def parse_database_url(value: str) -> URL:
    """Parse and check a database URL; only SQLite and PostgreSQL are supported."""
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        raise ValueError("not a database URL (expected sqlite:///… or postgresql://…)") from None
    backend = url.get_backend_name()
    if backend == "postgres":
        url = url.set(drivername="postgresql")
        backend = "postgresql"
    if backend not in {"sqlite", "postgresql"}:
        raise ValueError(f"unsupported database {backend!r} (use sqlite or postgresql)")
    driver = url.get_driver_name()
    allowed = {"sqlite": {"pysqlite", "aiosqlite"}, "postgresql": {"psycopg", "psycopg2"}}
    if url.drivername != backend and driver not in allowed[backend]:
        raise ValueError(f"unsupported driver {url.drivername!r}")
    if backend == "postgresql" and not url.database:
        raise ValueError("the PostgreSQL URL names no database")
    return url


def async_url(url: URL) -> URL:
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url.set(drivername="postgresql+psycopg")


def sync_url(url: URL) -> URL:
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite")
    return url.set(drivername="postgresql+psycopg")


# --------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def expand_variables(node: Any, env: Mapping[str, str], where: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:default}`` in every string of a parsed YAML tree."""
    if isinstance(node, dict):
        return {
            k: expand_variables(v, env, f"{where}.{k}" if where else str(k))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [expand_variables(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise ConfigError(f"{where or 'config'}: ${{{name}}} is not set and has no default")
        return default

    return _VAR.sub(substitute, node)


def _read_yaml(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"config file {path}: not UTF-8 text (byte {e.start + 1} cannot be decoded)"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise ConfigError(f"config file {path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    expanded = expand_variables(data, env)
    return {str(k).lower(): v for k, v in expanded.items()}


def _location(loc: tuple[int | str, ...]) -> str:
    """``('users', 1, 'team')`` -> ``users[1].team``, the style of the organisation checks."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _environment_name(loc: tuple[int | str, ...], env: Mapping[str, str]) -> str | None:
    """The environment variable that set the field at ``loc``, if one did."""
    if not loc or not all(isinstance(part, str) for part in loc):
        return None
    wanted = "__".join(str(part) for part in loc).lower()
    return next((name for name in env if name.lower() == wanted), None)


def _describe(error: ValidationError, env: Mapping[str, str]) -> str:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    location = _location(loc) or "config"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    elif first["type"] == "missing":
        message = "required"
    if not loc and re.match(r"^[\w.\[\]]+: ", message):
        location, _, message = message.partition(": ")
    variable = _environment_name(loc, env)
    if variable is not None:
        message += f" (from the environment variable {variable})"
    extra = len(error.errors()) - 1
    suffix = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return f"{location}: {message}{suffix}".replace("\n", " ")


def load_settings(config_path: str | os.PathLike[str] | None = None) -> Settings:
    """Build the settings from the file and ``os.environ``; raise ``ConfigError`` (one line)."""
    path = config_path or os.environ.get(CONFIG_ENV_VAR) or None
    file_values = _read_yaml(Path(path), os.environ) if path else {}
    try:
        return Settings(**file_values)
    except ValidationError as e:
        raise ConfigError(_describe(e, os.environ)) from None
    except (ValueError, TypeError) as e:  # a source that could not decode a value
        raise ConfigError(str(e).splitlines()[0]) from None
