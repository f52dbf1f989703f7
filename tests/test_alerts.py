"""``ops/prometheus-alerts.yml``: every rule parses as PromQL, and reads only series that a scrape of
SatuID really returns, with labels and label values those series really have.

Without a Prometheus to load the file into, this is what keeps the rules from going silent when a
metric or a label is renamed: an alert on a series that no longer exists never fires.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from idp import audit
from idp.db import unit_of_work
from tests.conftest import make_app
from tests.servers import free_port
from tests.test_metrics import Samples, scrape

RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus-alerts.yml"
#: Series Prometheus makes itself rather than scraping them.
FROM_PROMETHEUS = {"up"}
SEVERITIES = {"critical", "warning", "info"}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def selectors(expr: str) -> tuple[list[promql_parser.VectorSelector], list[list[str]]]:
    """The vector selectors of ``expr`` and the label lists its aggregations group by."""
    found: list[promql_parser.VectorSelector] = []
    grouped: list[list[str]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None \
                and node.modifier.type == promql_parser.AggModifierType.By:
            grouped.append(list(node.modifier.labels))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found, grouped


def test_every_rule_is_well_formed() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) >= 10, names
    for rule in rules():
        assert re.fullmatch(r"SatuID[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
        promql_parser.parse(rule["expr"])  # raises ValueError on a syntax error
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_a_syntax_error_is_caught() -> None:
    """The check above can fail: the parser refuses what Prometheus would."""
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(satuid_logins_total[5m])")


def _exported(app: Flask, client: FlaskClient, backend: dict[str, str]) -> Samples:
    """A scrape after what makes every series exist: an event and a checkpoint, the protocol
    endpoints, and a health check while Redis is unreachable (a 503). In one process the
    counters are the process's own, so the second app's count in the same scrape."""
    with app.app_context(), unit_of_work():
        audit.append("login", actor="citizen:x", citizen_id=None)
    assert app.test_cli_runner().invoke(args=["audit", "checkpoint"]).exit_code == 0
    client.get("/authorize")
    client.post("/token")
    client.get("/userinfo")
    cut_off = make_app({**backend, "IDP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        assert cut_off.test_client().get("/healthz").status_code == 503
    finally:
        cut_off.extensions["idp.engine"].dispose()
    return scrape(client)


def problems_of(rules: list[dict[str, Any]], samples: Samples) -> list[str]:
    """What in ``rules`` reads a series, a label or a label value that ``samples`` lacks."""
    labels_of: dict[str, list[dict[str, str]]] = {}
    for name, labels in samples:
        labels_of.setdefault(name, []).append(dict(labels))
    problems = []
    for rule in rules:
        found, grouped = selectors(rule["expr"])
        if not found:
            problems.append(f"{rule['alert']}: reads no series")
        for selector in found:
            name = selector.name
            if name in FROM_PROMETHEUS:
                continue
            if name not in labels_of:
                problems.append(f"{rule['alert']}: {name} is not exported")
                continue
            series = labels_of[name]
            for matcher in selector.matchers.matchers:
                values = {s[matcher.name] for s in series if matcher.name in s}
                wanted = ([matcher.value] if matcher.op == promql_parser.MatchOp.Equal
                          else matcher.value.split("|") if matcher.op == promql_parser.MatchOp.Re
                          else [])  # each alternative of a|b|c names a value that exists
                if not values:
                    problems.append(f"{rule['alert']}: {name} has no label {matcher.name}")
                elif missing := [v for v in wanted if v not in values]:
                    problems.append(f"{rule['alert']}: {name}{{{matcher.name}}} is never {missing} "
                                    f"(only {sorted(values)})")
            for by in grouped:
                for label in by:
                    if label != "le" and not any(label in s for s in series):
                        problems.append(f"{rule['alert']}: {name} has no label {label} to group by")
    return problems


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # the partitions' gauges too
def test_every_rule_reads_series_and_labels_that_are_exported(
        app: Flask, client: FlaskClient, backend: dict[str, str]) -> None:
    problems = problems_of(rules(), _exported(app, client, backend))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_the_check_finds_a_renamed_series_a_wrong_label_and_a_missing_grouping(
        app: Flask, client: FlaskClient, backend: dict[str, str]) -> None:
    """The comparison above can fail: each broken rule is reported, and a sound one is not."""
    samples = _exported(app, client, backend)
    broken = [
        {"alert": "Renamed", "expr": "rate(satuid_login_total[5m]) > 0"},
        {"alert": "Misspelt", "expr": 'rate(satuid_login_failures_total{reason="bad_pasword"}[5m]) > 0'},
        {"alert": "NoSuchLabel", "expr": 'satuid_outbox_messages{state="pending"} > 0'},
        {"alert": "Grouped", "expr": "sum by (client) (rate(satuid_backchannel_logouts_total[5m])) > 0"},
        {"alert": "Sound",
         "expr": 'rate(satuid_login_failures_total{reason=~"bad_password|throttled"}[5m]) > 0'}]
    found = problems_of(broken, samples)
    assert [line.split(":")[0] for line in found] == ["Renamed", "Misspelt", "NoSuchLabel", "Grouped"], found
