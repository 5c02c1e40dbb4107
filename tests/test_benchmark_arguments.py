"""The benchmarks refuse a count or a duration out of range with argparse's usage error
(exit 2, the argument named), before they start anything: ``--deliveries 0`` ended in an
IndexError, ``--mrs 0`` in a ZeroDivisionError, ``--gitlab-concurrency 0`` in a settings
validation dump, and ``--senders 0`` in a run that sent nothing."""

from __future__ import annotations

import importlib
import sys

import pytest

REFUSED = [
    ("webhooks", "--deliveries", "0"),
    ("webhooks", "--mrs", "0"),
    ("webhooks", "--senders", "0"),
    ("webhooks", "--senders", "many"),
    ("webhooks", "--gitlab-concurrency", "0"),
    ("webhooks", "--gitlab-concurrency", "257"),
    ("webhooks", "--timeout", "0"),
    ("selection", "--runs", "0"),
    ("dbscale", "--assignments", "0"),
    ("dbscale", "--days", "-3"),
    ("dbscale", "--runs", "0"),
    ("dbscale", "--baseline-runs", "0"),
    ("chat", "--rolls", "0"),
    ("fuzz", "--seconds", "0"),
    ("fuzz", "--seconds", "nan"),
    ("codeowners", "--repeat", "0"),
    ("codeowners", "--paths", "0"),
    ("codeowners", "--sections", "-1"),
]


@pytest.mark.parametrize(("benchmark", "option", "value"), REFUSED)
def test_an_argument_out_of_range_is_a_usage_error(
    benchmark: str,
    option: str,
    value: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = importlib.import_module(f"benchmarks.{benchmark}")
    monkeypatch.setattr(sys, "argv", [f"{benchmark}.py", f"{option}={value}"])
    with pytest.raises(SystemExit) as exited:
        module.main()
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"{benchmark}.py: error: argument {option}: {value!r}: a ")


def test_an_argument_in_range_is_taken() -> None:
    from benchmarks.arguments import count, positive_seconds

    assert count(1)("600") == 600
    assert count(0, 256)("256") == 256
    assert positive_seconds("0.5") == 0.5
