"""``badges:`` in the YAML file: validated at start, one line naming the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings
from plugins.badges.config import BadgesConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_list_of_criteria_is_read(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            """
badges:
  - {name: Speed Demon, metric: avg_ttfr_hours, operator: "<", value: 3, period: week,
     min_reviews: 2}
  - {name: Night Owl, metric: comments, operator: ">=", value: 10}
""",
        )
    )
    criteria = BadgesConfig.of(settings).root
    assert [(c.key, c.operator, c.value, c.period) for c in criteria] == [
        ("speed-demon", "<", 3.0, "week"),
        ("night-owl", ">=", 10.0, "month"),
    ]


def test_no_section_is_an_empty_list(tmp_path: Path) -> None:
    assert BadgesConfig.of(load_settings(write(tmp_path, "locale: en\n"))).root == ()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('{name: X, metric: comments, operator: "~", value: 1}', "badges[1].operator: "),
        ("{name: X, metric: speed, operator: '<', value: 1}", "badges[1].metric: "),
        ("{name: X, metric: comments, operator: top, value: 1.5}", "badges[1].value: "),
        ("{name: X, metric: comments, operator: '<', value: 1, period: year}", "badges[1].period"),
        ("{name: X, metric: comments, operator: '<', value: 1, colour: red}", "badges[1].colour"),
        ("{name: '!!', metric: comments, operator: '<', value: 1}", "badges[1].slug: "),
        ("{name: Ok, metric: comments, operator: '<', value: 1}", "defines the badge 'ok' again"),
    ],
)
def test_a_bad_entry_stops_start_with_one_line(tmp_path: Path, entry: str, expected: str) -> None:
    path = write(
        tmp_path,
        f"badges:\n  - {{name: Ok, metric: comments, operator: '>', value: 1}}\n  - {entry}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
