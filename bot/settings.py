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
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
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


class AreaConfig(_Strict):
    """A feature area's settings: the YAML key it owns (``key``) and its fields.

    An area declares it as its plugin's ``config_model``; the settings then accept that
    key (and ``KEY__FIELD`` environment variables), validate it at start like every other
    field, and ``TheConfig.of(settings)`` returns the section (its defaults when the
    settings were built without it).
    """

    key: ClassVar[str] = ""

    @classmethod
    def of(cls, settings: Settings) -> Self:
        value = getattr(settings, cls.key, None) if cls.key else None
        return value if isinstance(value, cls) else cls()


def _cron(value: str) -> str:
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as e:
        raise ValueError(f"bad cron expression {value!r} ({e})") from None
    return value


def _zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None
    return value


class ScheduleConfig(BaseModel):
    """``schedule:``: the zone of the crons (and of "a day"), and ``<job>: cron`` to
    override the default cron a feature area's job declares (an override naming no area's
    job is refused; one of an area turned off is logged at start and ignored)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"

    @model_validator(mode="after")
    def _crons(self) -> ScheduleConfig:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, str):
                raise ValueError(f"schedule.{name}: a cron expression is text, not {value!r}")
            try:
                _cron(value)
            except ValueError as e:
                raise ValueError(f"schedule.{name}: {e}") from None
        return self

    def cron(self, job: str) -> str | None:
        """The configured cron of ``job``, if the configuration overrides it."""
        value = (self.model_extra or {}).get(job)
        return value if isinstance(value, str) else None


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
    # PostgreSQL connections this process may open: a pool kept open, and as many more
    # as the overflow while it is busy (closed when returned). At least 2: the replica
    # that holds the Mattermost websocket keeps one for its leader lock. A worker replica
    # opens one more, for LISTEN. Ignored on SQLite.
    database_pool_size: int = Field(default=10, ge=2, le=500)
    database_max_overflow: int = Field(default=10, ge=0, le=500)
    redis_url: SecretStr | None = None
    # Redis is a cache: while it is down, /readiness answers 200 "degraded" unless this
    # is true (then 503, the strict behaviour for operators who want it).
    redis_required: bool = False
    # Where webhook deliveries wait while the database is down (the append-only journal;
    # with REDIS_URL, a Redis stream comes first and the journal is the fallback), and
    # how many bytes the spool may hold (per spool) before deliveries get 503 with
    # Retry-After; 0 turns the spool off.
    spool_dir: str = "spool"
    spool_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0, le=2**40)
    http_host: str = "0.0.0.0"  # noqa: S104 - the bot is a server
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = "http://localhost:8080"

    gitlab_url: str | None = None
    gitlab_token: SecretStr | None = None
    # GitLab calls in flight at once per process (threads and pooled connections): a roll
    # makes its independent calls together, and the workers roll several MRs at once.
    gitlab_concurrency: int = Field(default=32, ge=1, le=256)
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
    # A worker spends most of a roll waiting for GitLab, so there are many (I/O, not CPU).
    # 0 makes a web-only replica: it stores and acknowledges deliveries, answers HTTP and
    # chat, and leaves the processing to replicas with workers. Workers look at the inbox
    # every ``webhook_poll_seconds`` when nothing wakes them (on PostgreSQL, a replica
    # storing a delivery wakes every replica's workers at once with NOTIFY).
    webhook_workers: int = Field(default=16, ge=0, le=64)
    webhook_poll_seconds: float = Field(default=5.0, ge=0.1, le=300)
    webhook_max_attempts: int = Field(default=5, ge=1, le=50)
    webhook_retry_seconds: float = Field(default=2.0, gt=0, le=3600)
    webhook_lease_seconds: float = Field(default=20.0, ge=1, le=600)
    webhook_handler_timeout: float = Field(default=120.0, gt=0, le=3600)
    # Processed deliveries are deleted this many days after they were processed (the
    # replicas with workers look once an hour); 0 keeps them all. Dead letters are kept.
    # The default outlasts GitLab's webhook request logs (one to two months), from which
    # a delivery can be resent.
    webhook_retention_days: int = Field(default=90, ge=0, le=3650)

    teams: tuple[TeamConfig, ...] = ()
    users: tuple[UserConfig, ...] = ()
    schedule: ScheduleConfig = ScheduleConfig()
    locale: Literal["en", "fr"] = "en"
    # The feature areas enabled (unset: every built-in area and every installed one).
    plugins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("plugins", mode="before")
    @classmethod
    def _areas(cls, value: Any) -> Any:
        value = _split_commas(value)
        if isinstance(value, list | tuple) and not value:
            return ()
        return value

    @field_validator("plugins")
    @classmethod
    def _area_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            from bot.plugins import default_areas

            return default_areas()
        names = [name.strip() for name in value]
        for i, name in enumerate(names):
            if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*", name):
                raise ValueError(f"plugins[{i}]: {name!r} is not a feature area name")
            if name in names[:i]:
                raise ValueError(f"plugins[{i}]: {name!r} is listed twice")
        return tuple(names)

    @model_validator(mode="after")
    def _scheduled_jobs(self) -> Settings:
        """``schedule.<job>`` must name a job some feature area declares (enabled or not:
        turning an area off keeps its overrides valid)."""
        overridden = sorted(self.schedule.model_extra or {})
        if overridden:
            known = known_jobs(self.plugins)
            for name in overridden:
                if name not in known:
                    raise ValueError(
                        f"schedule.{name}: no feature area has a job {name!r}"
                        f" (jobs: {', '.join(sorted(known)) or 'none'})"
                    )
        return self

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
    if re.match(r"^[\w.\[\]]+: ", message):
        named, _, rest = message.partition(": ")
        if not loc or named.startswith(f"{location}."):  # a model check naming its field
            location, message = named, rest
    variable = _environment_name(loc, env)
    if variable is not None:
        message += f" (from the environment variable {variable})"
    extra = len(error.errors()) - 1
    suffix = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return f"{location}: {message}{suffix}".replace("\n", " ")


def known_jobs(enabled: tuple[str, ...]) -> set[str]:
    """The jobs every known area (built-in, installed, or enabled) declares."""
    from bot.plugins import RegistryError, default_areas, find_areas

    jobs: set[str] = set()
    for name in dict.fromkeys((*default_areas(), *enabled)):
        try:
            jobs |= set(find_areas([name])[0].job_crons())
        except RegistryError:
            continue  # an unknown area is reported on its own
    return jobs


def _enabled(values: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, ...]:
    """The ``plugins`` setting as the environment (``PLUGINS``) or the values give it."""
    given: Any = next((v for k, v in env.items() if k.upper() == "PLUGINS"), None)
    if given is None:
        given = values.get("plugins")
    if isinstance(given, str):
        given = [part.strip() for part in given.split(",") if part.strip()]
    if not given:
        from bot.plugins import default_areas

        return default_areas()
    if not isinstance(given, list | tuple) or not all(isinstance(n, str) for n in given):
        raise ConfigError("plugins: a list of feature area names")
    names = [name.strip() for name in given]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"plugins[{i}]: {name!r} is listed twice")
    return tuple(names)


@cache
def settings_model(areas: tuple[str, ...]) -> type[Settings]:
    """``Settings`` with one field per enabled area that owns a YAML key (its
    ``config_model``), so that the key, its ``KEY__FIELD`` environment variables and its
    validation work like the core's, and any other key is refused."""
    from bot.plugins import RegistryError, find_areas

    try:
        found = find_areas(areas)
    except RegistryError as e:
        raise ConfigError(f"plugins: {e}") from None
    names = {area.name for area in found}
    for area in found:
        missing = [needed for needed in area.plugin.requires if needed not in names]
        if missing:
            raise ConfigError(
                f"plugins: the {area.name} area needs {', '.join(missing)}; enable it too"
            )
    fields: dict[str, Any] = {}
    for area in found:
        model = area.plugin.config_model
        if model is None:
            continue
        key = getattr(model, "key", "")
        if not key or key in Settings.model_fields or key in fields:
            raise ConfigError(
                f"plugins: area {area.name!r} claims the setting {key!r}, which is taken"
            )
        fields[key] = (model, model())
    if not fields:
        return Settings
    return create_model("Settings", __base__=Settings, __module__=__name__, **fields)


def build_settings(values: Mapping[str, Any] | None = None) -> Settings:
    """Settings from ``values`` (the YAML file's, or a test's) and ``os.environ``, with the
    sections of the enabled areas. Raises ``ConfigError`` for an unknown area, pydantic's
    ``ValidationError`` for a bad value."""
    values = dict(values or {})
    return settings_model(_enabled(values, os.environ))(**values)


def _undecodable(message: str, env: Mapping[str, str]) -> str:
    """pydantic-settings' ``error parsing value for field "x" from source
    "EnvSettingsSource"`` as ``x: ...`` naming the environment variable."""
    found = re.search(r'field "(\w+)" from source "EnvSettingsSource"', message)
    if found is None:
        return message
    field = found.group(1)
    variable = next((name for name in env if name.lower() == field.lower()), field.upper())
    return (
        f"{field}: the environment variable {variable} is not JSON"
        f" (set one setting with {variable}__NAME=value)"
    )


def load_settings(config_path: str | os.PathLike[str] | None = None) -> Settings:
    """Build the settings from the file and ``os.environ``; raise ``ConfigError`` (one line)."""
    path = config_path or os.environ.get(CONFIG_ENV_VAR) or None
    file_values = _read_yaml(Path(path), os.environ) if path else {}
    try:
        return build_settings(file_values)
    except ValidationError as e:
        raise ConfigError(_describe(e, os.environ)) from None
    except (ValueError, TypeError) as e:  # a source that could not decode a value
        raise ConfigError(_undecodable(str(e).splitlines()[0], os.environ)) from None
