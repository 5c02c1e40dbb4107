"""``load_settings``: defaults < YAML file (``${VAR:default}``) < environment, and every
bad configuration as one ``ConfigError`` line naming the field and the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.settings import (
    ConfigError,
    ScheduleConfig,
    Settings,
    TeamConfig,
    UserConfig,
    load_settings,
)
from plugins.roulette.config import RouletteConfig, Weights

SPEC_EXAMPLE = """\
teams:
  - name: backend
    labels: ["team::backend"]      # an MR with one of these labels belongs to the team
    channel: backend-reviews       # Mattermost channel for the daily digest
    gitlab_group: acme/backend     # optional: members also read from this GitLab group
users:
  - gitlab: alice                  # GitLab username
    mattermost: alice              # optional; defaults to the GitLab username
    team: backend
    role: maintainer               # maintainer | reviewer | trainee
    timezone: Europe/Paris         # optional
    email: alice@example.com       # optional; else GitLab's public email
    max_active_reviews: 5          # optional capacity
roulette:
  reviewers: 3                     # code owner, team member, external
  assign_in_gitlab: true           # also set them as the MR's reviewers
  notify_reviewers: dm             # dm | off
  auto_roulette: off               # off | on_open
  weights: {active_review: 10, recent_review: 5, expertise: 2}
schedule:
  digest: "0 9 * * 1-5"            # cron, UTC
  aggregate: "0 2 * * *"
  badges: "0 9 * * *"
locale: en                         # en | fr; a Mattermost user's own locale wins
"""


@pytest.fixture
def write_config(tmp_path: Path):
    def write(text: str, name: str = "roulette.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def secrets(values: list[SecretStr]) -> list[str]:
    return [v.get_secret_value() for v in values]


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("database_url", "sqlite:///./roulette.db"),
        ("redis_url", None),
        ("http_host", "0.0.0.0"),
        ("http_port", 8080),
        ("public_url", "http://localhost:8080"),
        ("gitlab_url", None),
        ("gitlab_token", None),
        ("gitlab_webhook_secret", None),
        ("gitlab_webhook_signing_token", None),
        ("api_tokens", []),
        ("mattermost_url", None),
        ("mattermost_token", None),
        ("mattermost_team", None),
        ("mattermost_command_tokens", []),
        ("log_level", "info"),
        ("log_format", "json"),
        ("teams", ()),
        ("users", ()),
        ("roulette", RouletteConfig()),
        ("schedule", ScheduleConfig()),
        ("locale", "en"),
    ],
)
def test_defaults_without_a_file(attribute: str, expected: Any) -> None:
    assert getattr(load_settings(), attribute) == expected


def test_default_organisation_values_follow_the_spec() -> None:
    settings = load_settings()
    assert settings.roulette == RouletteConfig(
        reviewers=3,
        assign_in_gitlab=True,
        notify_reviewers="dm",
        auto_roulette="off",
        weights=Weights(active_review=10, recent_review=5, expertise=2),
    )
    assert settings.schedule == ScheduleConfig(timezone="UTC")
    assert settings.secret_values() == []


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_means_the_defaults(write_config, text: str) -> None:
    assert load_settings(write_config(text)) == load_settings()


# --------------------------------------------------------------------------- the file


def test_the_spec_example_parses_into_typed_objects(write_config) -> None:
    settings = load_settings(write_config(SPEC_EXAMPLE))
    assert settings.teams == (
        TeamConfig(
            name="backend",
            labels=("team::backend",),
            channel="backend-reviews",
            gitlab_group="acme/backend",
        ),
    )
    assert settings.users == (
        UserConfig(
            gitlab="alice",
            mattermost="alice",
            team="backend",
            role="maintainer",
            timezone="Europe/Paris",
            email="alice@example.com",
            max_active_reviews=5,
        ),
    )
    assert settings.roulette == RouletteConfig(
        reviewers=3,
        assign_in_gitlab=True,
        notify_reviewers="dm",
        auto_roulette="off",
        weights=Weights(active_review=10, recent_review=5, expertise=2),
    )
    assert settings.schedule == ScheduleConfig(
        digest="0 9 * * 1-5", aggregate="0 2 * * *", badges="0 9 * * *"
    )
    assert settings.locale == "en"
    assert settings.team("BACKEND") is settings.teams[0]
    assert settings.team("frontend") is None


def test_optional_user_fields_default(write_config) -> None:
    settings = load_settings(
        write_config(
            """
            users:
              - gitlab: "@bob"
            """
        )
    )
    (bob,) = settings.users
    assert bob == UserConfig(gitlab="bob")
    assert (bob.role, bob.team, bob.timezone, bob.email, bob.max_active_reviews) == (
        "reviewer",
        None,
        None,
        None,
        None,
    )
    assert bob.mattermost_username == "bob"


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [("off", "off"), ("'off'", "off"), ("false", "off"), ("on_open", "on_open")],
)
def test_auto_roulette_off_survives_yaml_1_1(write_config, yaml_value: str, expected: str) -> None:
    path = write_config(f"roulette:\n  auto_roulette: {yaml_value}\n  notify_reviewers: off\n")
    settings = load_settings(path)
    assert settings.roulette.auto_roulette == expected
    assert settings.roulette.notify_reviewers == "off"


def test_the_file_sets_top_level_values(write_config) -> None:
    settings = load_settings(
        write_config(
            """
            database_url: postgresql://bot:pw@db.example.com/roulette
            http_port: 9000
            log_level: DEBUG
            public_url: https://bot.example.com/
            gitlab_url: https://gitlab.example.com
            locale: fr
            """
        )
    )
    assert settings.database_url == "postgresql://bot:pw@db.example.com/roulette"
    assert settings.http_port == 9000
    assert settings.log_level == "debug"
    assert settings.public_url == "https://bot.example.com"
    assert settings.gitlab_url == "https://gitlab.example.com"
    assert settings.locale == "fr"


def test_roulette_config_environment_variable_is_the_fallback(write_config, monkeypatch) -> None:
    monkeypatch.setenv("ROULETTE_CONFIG", str(write_config("http_port: 9100\n")))
    assert load_settings().http_port == 9100
    # An explicit path wins over the variable.
    assert load_settings(write_config("http_port: 9200\n", "other.yaml")).http_port == 9200


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("DATABASE_URL", "sqlite:///env.db", "database_url", "sqlite:///env.db"),
        ("HTTP_PORT", "9999", "http_port", 9999),
        ("HTTP_HOST", "127.0.0.1", "http_host", "127.0.0.1"),
        ("LOG_LEVEL", "WARNING", "log_level", "warning"),
        ("LOG_FORMAT", "console", "log_format", "console"),
        ("PUBLIC_URL", "https://env.example.com", "public_url", "https://env.example.com"),
        ("LOCALE", "fr", "locale", "fr"),
        ("MATTERMOST_TEAM", "acme", "mattermost_team", "acme"),
    ],
)
def test_the_environment_overrides_the_file(
    write_config, monkeypatch, variable: str, value: str, attribute: str, expected: Any
) -> None:
    path = write_config(
        """
        database_url: sqlite:///file.db
        http_port: 9000
        http_host: 10.0.0.1
        log_level: error
        log_format: json
        public_url: https://file.example.com
        locale: en
        mattermost_team: file-team
        """
    )
    assert getattr(load_settings(path), attribute) != expected
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(path), attribute) == expected
    # Without the file, the environment still overrides the default.
    assert getattr(load_settings(), attribute) == expected


def test_nested_environment_override_merges_with_the_file(write_config, monkeypatch) -> None:
    path = write_config(
        """
        roulette:
          reviewers: 3
          assign_in_gitlab: false
          weights: {active_review: 7}
        """
    )
    monkeypatch.setenv("ROULETTE__REVIEWERS", "2")
    monkeypatch.setenv("ROULETTE__WEIGHTS__EXPERTISE", "4.5")
    roulette = load_settings(path).roulette
    assert roulette.reviewers == 2
    assert roulette.assign_in_gitlab is False  # from the file, not reset to the default
    assert roulette.weights == Weights(active_review=7, recent_review=5, expertise=4.5)
    # And over the defaults alone.
    assert load_settings().roulette.reviewers == 2


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("API_TOKENS", "tok-one,tok-two", ["tok-one", "tok-two"]),
        ("API_TOKENS", " tok-one , tok-two ,, ", ["tok-one", "tok-two"]),
        ("API_TOKENS", "single-token", ["single-token"]),
        ("API_TOKENS", "", []),
        ("MATTERMOST_COMMAND_TOKENS", "cmd-aaaa,cmd-bbbb", ["cmd-aaaa", "cmd-bbbb"]),
    ],
)
def test_comma_separated_tokens_from_the_environment(
    monkeypatch, variable: str, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv(variable, value)
    settings = load_settings()
    values = getattr(settings, variable.lower())
    assert all(isinstance(v, SecretStr) for v in values)
    assert secrets(values) == expected
    assert "tok-one" not in repr(settings)


@pytest.mark.parametrize(
    "text", ["api_tokens: [tok-one, tok-two]\n", "api_tokens: tok-one,tok-two\n"]
)
def test_tokens_from_the_file_as_list_or_commas(write_config, text: str) -> None:
    assert secrets(load_settings(write_config(text)).api_tokens) == ["tok-one", "tok-two"]


# --------------------------------------------------------------------------- ${VAR:default}


@pytest.mark.parametrize(
    ("template", "environment", "expected"),
    [
        ("${GL_HOST}", {"GL_HOST": "https://gl.example.com"}, "https://gl.example.com"),
        ("${GL_HOST:https://default.example.com}", {}, "https://default.example.com"),
        (
            "${GL_HOST:https://default.example.com}",
            {"GL_HOST": "https://env.example.com"},
            "https://env.example.com",
        ),
        ("https://${GL_NAME:gitlab}.${GL_DOMAIN:example.com}", {}, "https://gitlab.example.com"),
        ("https://${GL_NAME:gitlab}.example.com", {"GL_NAME": "git"}, "https://git.example.com"),
        ("https://gitlab.example.com", {"GL_HOST": "ignored"}, "https://gitlab.example.com"),
    ],
)
def test_variable_expansion_in_values(
    write_config, monkeypatch, template: str, environment: dict[str, str], expected: str
) -> None:
    for name in ("GL_HOST", "GL_NAME", "GL_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert load_settings(write_config(f'gitlab_url: "{template}"\n')).gitlab_url == expected


def test_variable_expansion_keeps_colons_in_the_default(write_config, monkeypatch) -> None:
    monkeypatch.delenv("RR_DB", raising=False)
    path = write_config("database_url: ${RR_DB:sqlite:///./from-default.db}\n")
    assert load_settings(path).database_url == "sqlite:///./from-default.db"


def test_variable_expansion_in_nested_lists_and_typed_values(write_config, monkeypatch) -> None:
    monkeypatch.setenv("RR_TEAM", "platform")
    monkeypatch.setenv("RR_LABEL", "team::platform")
    monkeypatch.setenv("RR_TOKENS", "tok-one,tok-two")
    monkeypatch.delenv("RR_REVIEWERS", raising=False)
    monkeypatch.delenv("RR_CAPACITY", raising=False)
    settings = load_settings(
        write_config(
            """
            teams:
              - name: ${RR_TEAM}
                labels: ["${RR_LABEL}", "extra::${RR_MISSING:none}"]
            users:
              - gitlab: alice
                team: ${RR_TEAM}
                max_active_reviews: ${RR_CAPACITY:4}
            roulette:
              reviewers: ${RR_REVIEWERS:2}
            api_tokens: ${RR_TOKENS}
            """
        )
    )
    assert settings.teams[0].name == "platform"
    assert settings.teams[0].labels == ("team::platform", "extra::none")
    assert settings.users[0].team == "platform"
    assert settings.users[0].max_active_reviews == 4
    assert settings.roulette.reviewers == 2
    assert secrets(settings.api_tokens) == ["tok-one", "tok-two"]


# --------------------------------------------------------------------------- database URLs


@pytest.mark.parametrize(
    ("url", "async_driver", "sync_driver"),
    [
        ("sqlite:///./roulette.db", "sqlite+aiosqlite", "sqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite", "sqlite"),
        ("postgresql://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg", "postgresql+psycopg"),
        ("postgres://u:p@h:5433/db", "postgresql+psycopg", "postgresql+psycopg"),
    ],
)
def test_database_url_normalisation(
    monkeypatch, url: str, async_driver: str, sync_driver: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    settings = load_settings()
    assert settings.async_database_url.drivername == async_driver
    assert settings.sync_database_url.drivername == sync_driver
    assert settings.async_database_url.database == settings.sync_database_url.database


def test_postgres_scheme_keeps_host_port_and_credentials(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://bot:s3cret-pw@db.example.com:5433/roulette")
    url = load_settings().async_database_url
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "bot",
        "s3cret-pw",
        "db.example.com",
        5433,
        "roulette",
    )


def test_secret_values_lists_every_secret(monkeypatch) -> None:
    environment = {
        "DATABASE_URL": "postgresql+psycopg://bot:db-password-1@db/roulette",
        "REDIS_URL": "redis://:redis-pw@cache:6379/0",
        "GITLAB_TOKEN": "glpat-abcdefgh12345678",
        "GITLAB_WEBHOOK_SECRET": "hook-secret-1",
        "GITLAB_WEBHOOK_SIGNING_TOKEN": "whsec_c2lnbmluZ3Rva2Vu",
        "MATTERMOST_TOKEN": "mm-token-1",
        "API_TOKENS": "api-token-1,api-token-2",
        "MATTERMOST_COMMAND_TOKENS": "cmd-token-1",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    found = settings.secret_values()
    for expected in (
        "db-password-1",
        "redis://:redis-pw@cache:6379/0",
        "glpat-abcdefgh12345678",
        "hook-secret-1",
        "whsec_c2lnbmluZ3Rva2Vu",
        "mm-token-1",
        "api-token-1",
        "api-token-2",
        "cmd-token-1",
    ):
        assert expected in found
    shown = repr(settings) + str(settings)
    for secret in found:
        if secret != "db-password-1":  # the URL is a plain string; the masker hides it
            assert secret not in shown


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.http_port = 1  # type: ignore[misc]
    assert isinstance(settings, Settings)


# --------------------------------------------------------------------------- bad configs

UNKNOWN_TEAM = """\
teams:
  - name: backend
users:
  - gitlab: alice
    team: backend
  - gitlab: bob
    team: x
"""

# (name, YAML text or None, environment, field in the message, problem in the message)
BAD_CONFIGS: list[tuple[str, str | None, dict[str, str], str, str]] = [
    ("malformed yaml", "teams: [backend\n", {}, "roulette.yaml", "invalid YAML at line 2"),
    ("yaml tab", "teams:\n\t- name: x\n", {}, "roulette.yaml", "invalid YAML at line 2"),
    ("top level not a mapping", "- a\n- b\n", {}, "roulette.yaml", "must be a mapping"),
    ("unknown team", UNKNOWN_TEAM, {}, "users[1].team", "unknown team 'x'"),
    (
        "duplicate gitlab username",
        "users:\n  - gitlab: alice\n  - gitlab: Alice\n",
        {},
        "users[1].gitlab",
        "duplicate username 'Alice' (also users[0])",
    ),
    (
        "duplicate mattermost username",
        "users:\n  - gitlab: alice\n  - gitlab: bob\n    mattermost: alice\n",
        {},
        "users[1].mattermost",
        "duplicate username 'alice'",
    ),
    (
        "duplicate team",
        "teams:\n  - name: backend\n  - name: Backend\n",
        {},
        "teams[1].name",
        "duplicate team 'Backend'",
    ),
    (
        "bad cron",
        "schedule:\n  digest: '61 9 * * *'\n",
        {},
        "schedule.digest",
        "bad cron expression '61 9 * * *'",
    ),
    (
        "cron with too few fields",
        "schedule:\n  badges: 'daily'\n",
        {},
        "schedule.badges",
        "bad cron expression 'daily'",
    ),
    ("database url unparsable", None, {"DATABASE_URL": "not a url"}, "database_url", "not a"),
    (
        "database url unsupported",
        "database_url: mysql://u@h/db\n",
        {},
        "database_url",
        "unsupported database 'mysql'",
    ),
    (
        "postgres url without database",
        None,
        {"DATABASE_URL": "postgresql://u@h"},
        "database_url",
        "names no database",
    ),
    (
        "unknown timezone",
        "users:\n  - gitlab: alice\n    timezone: Mars/Olympus_Mons\n",
        {},
        "users[0].timezone",
        "unknown timezone 'Mars/Olympus_Mons'",
    ),
    (
        "bad role",
        "users:\n  - gitlab: alice\n    role: boss\n",
        {},
        "users[0].role",
        "'maintainer', 'reviewer' or 'trainee'",
    ),
    ("unknown top-level key", "reviewerz: 3\n", {}, "reviewerz", "unknown setting"),
    ("unknown nested key", "roulette:\n  reviewerz: 3\n", {}, "roulette.reviewerz", "unknown"),
    (
        "unknown user key",
        "users:\n  - gitlab: alice\n    nickname: al\n",
        {},
        "users[0].nickname",
        "unknown setting",
    ),
    ("bad LOG_LEVEL", None, {"LOG_LEVEL": "verbose"}, "log_level", "LOG_LEVEL"),
    ("bad LOG_FORMAT", None, {"LOG_FORMAT": "xml"}, "log_format", "'json' or 'console'"),
    ("non-numeric HTTP_PORT", None, {"HTTP_PORT": "eighty"}, "http_port", "valid integer"),
    ("HTTP_PORT out of range", None, {"HTTP_PORT": "70000"}, "http_port", "65535"),
    (
        "a pool of one connection",
        None,
        {"DATABASE_POOL_SIZE": "1"},
        "database_pool_size",
        "greater than or equal to 2",
    ),
    (
        "a negative overflow",
        None,
        {"DATABASE_MAX_OVERFLOW": "-1"},
        "database_max_overflow",
        "greater than or equal to 0",
    ),
    ("an area twice", "plugins: [roulette, roulette]\n", {}, "plugins[1]", "listed twice"),
    ("an area twice (env)", None, {"PLUGINS": "ooo,ooo"}, "plugins[1]", "listed twice"),
    ("an unknown area", "plugins: [roulette, nowhere]\n", {}, "plugins", "unknown feature area"),
    ("an area without one it needs", "plugins: [leaderboard]\n", {}, "plugins", "needs metrics"),
    (
        "a schedule for no job",
        "schedule: {nosuchjob: '0 1 * * *'}\n",
        {},
        "schedule.nosuchjob",
        "no feature area has a job",
    ),
    ("a section not JSON (env)", None, {"ROULETTE": "notjson"}, "roulette", "ROULETTE is not JSON"),
    (
        "bad nested env",
        None,
        {"ROULETTE__REVIEWERS": "many"},
        "roulette.reviewers",
        "ROULETTE__REVIEWERS",
    ),
    (
        "unset variable without default",
        "gitlab_url: ${RR_UNSET_VARIABLE}\n",
        {},
        "gitlab_url",
        "${RR_UNSET_VARIABLE} is not set and has no default",
    ),
    (
        "unset variable in a list",
        "teams:\n  - name: a\n    labels: [x, '${RR_UNSET_VARIABLE}']\n",
        {},
        "teams[0].labels[1]",
        "${RR_UNSET_VARIABLE} is not set",
    ),
    (
        "bad signing token",
        None,
        {"GITLAB_WEBHOOK_SIGNING_TOKEN": "not-whsec"},
        "gitlab_webhook_signing_token",
        "starting with whsec_",
    ),
    (
        "bad reviewers count",
        "roulette:\n  reviewers: 0\n",
        {},
        "roulette.reviewers",
        "greater than or equal to 1",
    ),
    ("bad locale", "locale: de\n", {}, "locale", "'en' or 'fr'"),
    ("bad url", "gitlab_url: gitlab.example.com\n", {}, "gitlab_url", "not an http(s) URL"),
    (
        "bad username",
        "users:\n  - gitlab: 'al ice'\n",
        {},
        "users[0].gitlab",
        "not a valid username",
    ),
    ("bad email", "users:\n  - gitlab: a\n    email: nope\n", {}, "users[0].email", "not an email"),
]


@pytest.mark.parametrize(
    ("text", "environment", "field", "problem"),
    [case[1:] for case in BAD_CONFIGS],
    ids=[case[0] for case in BAD_CONFIGS],
)
def test_bad_configuration_is_one_line_naming_field_and_problem(
    write_config,
    monkeypatch,
    text: str | None,
    environment: dict[str, str],
    field: str,
    problem: str,
) -> None:
    monkeypatch.delenv("RR_UNSET_VARIABLE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    path = write_config(text) if text is not None else None
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(field) or f"config file {path}" in message
    assert field in message
    assert problem in message


def test_missing_config_file(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"^config file .*nope\.yaml: cannot read \(No such"):
        load_settings(missing)
    monkeypatch.setenv("ROULETTE_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_settings()


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path)


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("locale: fr # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text") as caught:
        load_settings(path)
    assert "\n" not in str(caught.value)


def test_several_problems_are_counted_on_the_one_line(write_config) -> None:
    path = write_config("locale: de\nhttp_port: x\nfoo: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "(and 2 more problems)" in message


def test_config_errors_do_not_show_secret_values(write_config, monkeypatch) -> None:
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-topsecret-value")
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:hunter2pw@db.example.com:5432")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("database_url: ")
    assert "hunter2pw" not in message
    assert "glpat-topsecret-value" not in message
