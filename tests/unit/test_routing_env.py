"""Secrets in the routing file come from the environment: ``${VAR}`` references."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.notifier.envsubst import UnsetVariable, expand
from services.notifier.routing import load_routing
from shared.errors import ConfigError

ROUTING = """
channels:
  pd:    {type: pagerduty, url: "${PD_URL:-https://events.pagerduty.com/v2/enqueue}", routing_key: "${PD_KEY}"}
  slack: {type: slack, url: "${SLACK_URL}"}
  audit: {type: webhook, url: https://audit.example/hook, secret: "${AUDIT_SECRET}"}
default: {team: live-ops, channels: [pd, slack, audit]}
"""
ENV = {"PD_KEY": "R0UT1NGKEY", "SLACK_URL": "https://hooks.slack.com/services/T/B/X",
       "AUDIT_SECRET": "very-secret-1"}


def test_expand_fills_defaults_escapes_and_leaves_the_rest() -> None:
    doc = {"a": "x-${A}-${B:-dflt}-$${A}", "n": 5, "l": ["${A}", True, None], "${A}": "key kept"}
    assert expand(doc, {"A": "1"}) == {"a": "x-1-dflt-${A}", "n": 5, "l": ["1", True, None], "${A}": "key kept"}
    assert expand("${A:-}", {}) == ""
    assert expand("$A and ${not a name} stay", {"A": "1"}) == "$A and ${not a name} stay"


def test_unset_variable_names_itself_and_where() -> None:
    with pytest.raises(UnsetVariable) as err:
        expand({"channels": {"pd": {"routing_key": "${PD_KEY}"}}}, {})
    assert str(err.value) == "channels.pd.routing_key: environment variable PD_KEY is not set"


def test_routing_file_takes_secrets_from_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "routing.yaml"
    f.write_text(ROUTING)
    r = load_routing(f, env=ENV)
    assert r.channels["pd"].routing_key == "R0UT1NGKEY"  # type: ignore[union-attr]
    assert str(r.channels["pd"].url) == "https://events.pagerduty.com/v2/enqueue"
    assert str(r.channels["slack"].url) == ENV["SLACK_URL"]
    assert r.channels["audit"].secret == "very-secret-1"  # type: ignore[union-attr]


def test_a_missing_secret_stops_start_with_one_line_and_no_other_secret(tmp_path: Path) -> None:
    f = tmp_path / "routing.yaml"
    f.write_text(ROUTING)
    env = {k: v for k, v in ENV.items() if k != "SLACK_URL"}
    with pytest.raises(ConfigError) as err:
        load_routing(f, env=env)
    msg = str(err.value)
    assert msg == f"routing file {f}: channels.slack.url: environment variable SLACK_URL is not set"
    assert not any(v in msg for v in env.values())
