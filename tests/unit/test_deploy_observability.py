"""The alert rules, scrape configs and Grafana dashboard (deploy/) fit the code.

Every metric an alert or a panel queries must be one the services export: the names are
read from the metrics classes in ``services/*/metrics.py``, instantiated on a fresh
``CollectorRegistry`` (new metrics classes are picked up without editing this test).
A renamed metric therefore fails here rather than leaving an alert that can never fire.
``promtool`` checks the files too when it is installed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from livetriage.runtime import ROLES

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
SCRAPE_CONFIGS = (PROMETHEUS / "prometheus.yml", PROMETHEUS / "prometheus-k8s.yml")
DASHBOARD = ROOT / "deploy" / "grafana" / "livetriage.json"

# series every Prometheus has without livetriage exporting them
STANDARD_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
# labels Prometheus attaches to every series, and the bucket bound of histograms
TARGET_LABELS = {"job", "instance", "pod", "namespace"}
SEVERITIES = {"critical", "warning"}
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
JOBS = {f"livetriage-{role}" for role in ROLES}

_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_BRACES = re.compile(r"\{[^}]*\}")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan", "Inf", "NaN",
}


# --- what the code exports ------------------------------------------------------------


def _metrics_classes() -> Iterator[type]:
    for path in sorted((ROOT / "services").glob("*/metrics.py")):
        module = importlib.import_module(f"services.{path.parent.name}.metrics")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            takes_registry = "registry" in inspect.signature(cls).parameters
            if cls.__module__ == module.__name__ and takes_registry:
                yield cls


def _metrics_of(obj: object, depth: int = 0) -> Iterator[object]:
    """The Prometheus metrics an instance holds, also inside the shared helpers it holds
    (ConsumerLag and its ConsumerErrors, EventLoopLag)."""
    for value in vars(obj).values():
        if isinstance(value, MetricWrapperBase):
            yield value
        elif depth < 2 and hasattr(value, "__dict__") and type(value).__module__.startswith("shared."):
            yield from _metrics_of(value, depth + 1)


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name the services can expose -> its label names."""
    registry = CollectorRegistry()
    classes = list(_metrics_classes())
    assert len(classes) >= 3, f"expected ingest, triage and notifier metrics, found {classes}"
    for cls in classes:
        instance = cls(registry=registry)
        # a labelled metric has no samples until it is used: give every one a child so
        # the registry lists its series and label names
        for metric in _metrics_of(instance):
            labelnames = getattr(metric, "_labelnames", ())
            if labelnames:
                metric.labels(*("x" for _ in labelnames))
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    assert any(n.endswith("_total") for n in names) and any(n.endswith("_bucket") for n in names)
    return names


# --- reading PromQL -------------------------------------------------------------------


def _metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', _VARIABLE.sub("", expr))
    text = _GROUPING.sub(" ", _BRACES.sub(" ", _RANGE.sub(" ", _SELECTOR.sub(r"\1 ", text))))
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


def _label_matchers(expr: str) -> Iterator[tuple[str, str, str]]:
    """(metric, label, quoted value) of every matcher on a named selector."""
    for metric, body in _SELECTOR.findall(_VARIABLE.sub("", expr)):
        for label, value in _MATCHER.findall(body):
            yield metric, label, value


def _grouping_labels(expr: str) -> set[str]:
    out: set[str] = set()
    for clause in _GROUPING.findall(expr):
        inner = clause[clause.index("(") + 1 : -1]
        out.update(x.strip() for x in inner.split(",") if x.strip())
    return out


def test_the_promql_reader_finds_what_it_should() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, stage) '
            '(rate(a_bucket{stage="x"}[$__rate_interval])))'
            ' / ignoring (reason) group_left sum(rate(b_total[5m] offset 1h)) > bool 2e3'
            ' and absent(up{job="j"} == 1) or c')
    assert _metric_names(expr) == {"a_bucket", "b_total", "up", "c"}
    assert set(_label_matchers(expr)) == {("a_bucket", "stage", '"x"'), ("up", "job", '"j"')}
    assert _grouping_labels(expr) == {"le", "stage", "reason"}


def _check_expr(expr: str, exported: dict[str, set[str]], where: str) -> None:
    names = _metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    unknown = names - set(exported) - STANDARD_METRICS
    assert not unknown, f"{where}: metrics not exported by services/*/metrics.py: {sorted(unknown)}"
    for metric, label, _ in _label_matchers(expr):
        allowed = exported.get(metric, set()) | TARGET_LABELS
        assert label in allowed, f"{where}: {metric} has no label {label!r}"
    known_labels = set().union(*(exported.get(n, set()) for n in names)) | TARGET_LABELS | {"le"}
    unknown_labels = _grouping_labels(expr) - known_labels
    assert not unknown_labels, f"{where}: groups by labels no metric has: {sorted(unknown_labels)}"


# --- alert rules ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}, "a rule file has only `groups`"
    out = []
    group_names = [g["name"] for g in doc["groups"]]
    assert len(group_names) == len(set(group_names)), "group names must be unique"
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}, group["name"]
        assert group["rules"], f"group {group['name']} is empty"
        if "interval" in group:
            assert _DURATION.match(group["interval"])
        out.extend(group["rules"])
    return out


def test_rules_are_well_formed_alerts(rules: list[dict[str, Any]]) -> None:
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        name = rule.get("alert")
        assert name and re.fullmatch(r"Livetriage[A-Z][A-Za-z0-9]+", name), f"alert name {name!r}"
        assert set(rule) <= RULE_KEYS, f"{name}: unknown keys {set(rule) - RULE_KEYS}"
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), name
        assert isinstance(rule.get("for"), str) and rule["for"] and _DURATION.match(rule["for"]), (
            f"{name}: `for` must be a Prometheus duration, got {rule.get('for')!r}")
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert all(isinstance(v, str) for v in rule["labels"].values()), name
        notes = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(notes), f"{name}: {set(notes)}"
        assert all(isinstance(v, str) and v.strip() for v in notes.values()), name


def test_rules_cover_the_operator_checklist(rules: list[dict[str, Any]]) -> None:
    exprs = " ".join(r["expr"] for r in rules)
    assert "up{" in exprs, "service down"
    assert "livetriage_ingest_dlq_total" in exprs, "DLQ rate"
    assert 'status="dead"' in exprs, "dead pages"
    assert "livetriage_ingest_reports_consumed_total" in exprs, "no reports received"
    assert any(r["labels"]["severity"] == "critical" for r in rules)


def test_rules_query_only_exported_metrics(
    rules: list[dict[str, Any]], exported: dict[str, set[str]]
) -> None:
    for rule in rules:
        _check_expr(rule["expr"], exported, rule["alert"])
        for _, label, value in _label_matchers(rule["expr"]):
            if label == "job":
                pattern = json.loads(value)
                assert any(re.fullmatch(pattern, job) for job in JOBS), (
                    f"{rule['alert']}: job {pattern!r} matches no scrape job {sorted(JOBS)}")


# --- scrape configs -------------------------------------------------------------------


@pytest.mark.parametrize("path", SCRAPE_CONFIGS, ids=lambda p: p.name)
def test_scrape_config_loads_the_rules(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    for rule_file in config["rule_files"]:
        assert (path.parent / rule_file).is_file(), f"{path.name}: {rule_file} does not exist"
    assert _DURATION.match(config["global"]["scrape_interval"])
    assert config["scrape_configs"]


def test_compose_scrape_jobs_match_the_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    config = yaml.safe_load(SCRAPE_CONFIGS[0].read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == JOBS
    for role in ROLES:
        (sd,) = jobs[f"livetriage-{role}"]["dns_sd_configs"]
        assert sd["names"] == [role] and role in compose, role
        env = compose[role].get("environment", {})
        port = (env.get("LIVETRIAGE_API_PORT", 8080) if role == "notifier"
                else env["LIVETRIAGE_METRICS_PORT"])
        assert sd["port"] == int(port), f"{role} serves /metrics on {port}"


def test_k8s_scrape_names_jobs_after_the_component_label() -> None:
    config = yaml.safe_load(SCRAPE_CONFIGS[1].read_text())
    (job,) = config["scrape_configs"]
    relabels = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    naming = relabels[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]
    assert naming["target_label"] == "job"
    components = set()
    for path in (ROOT / "deploy" / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                labels = doc["spec"]["template"]["metadata"]["labels"]
                components.add(labels["app.kubernetes.io/component"])
    assert {naming["replacement"].replace("$1", c) for c in components} == JOBS


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH")
    return promtool


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_compose_scrape_config() -> None:
    # not prometheus-k8s.yml: distribution builds of promtool may lack Kubernetes discovery
    result = subprocess.run([_promtool(), "check", "config", str(SCRAPE_CONFIGS[0])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _all_panels(p.get("panels", []))


def test_dashboard_is_importable(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    ids = [p["id"] for p in _all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_rows(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Ingest", "Triage", "Notifier"]


def test_dashboard_panels_query_prometheus(dashboard: dict[str, Any]) -> None:
    for panel in _all_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        where = f"panel {panel['id']} {panel['title']!r}"
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", where
        assert panel["targets"], f"{where} has no queries"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == "${DS_PROMETHEUS}", where
            assert target["expr"].strip(), where


def test_dashboard_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps panel {cells[(x, y)]}"
                cells[(x, y)] = panel["id"]


def test_dashboard_queries_only_exported_metrics(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    used: set[str] = set()
    for panel in _all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            _check_expr(target["expr"], exported, f"panel {panel['title']!r}")
            used |= _metric_names(target["expr"])
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in used}
    missing = families - shown
    assert not missing, f"exported metrics the dashboard does not show: {sorted(missing)}"
