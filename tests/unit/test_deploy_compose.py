"""The production-shape deployment (Dockerfile + docker-compose.yml) is wired correctly.

No Docker engine is needed: the compose file is parsed with PyYAML and checked against
the CLI and the settings it drives; ``docker-compose config`` runs when it is installed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from livetriage.cli import build_parser
from livetriage.runtime import ROLES
from tests.helpers import settings_from_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

APP_SERVICES = ("ingest", "triage", "notifier")
ALL_SERVICES = ("kafka", "postgres", "migrate", *APP_SERVICES)
NEEDS_DATABASE = ("migrate", "ingest", "triage", "notifier")

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: Any) -> str:
    """Compose-style ``${VAR:-default}`` with the defaults (the file must work unconfigured)."""
    return _VAR.sub(lambda m: m.group("default") or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # ["KEY=value", ...]
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): _interpolate(v) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert cmd, "app services must say which livetriage subcommand they run"
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form has no condition at all
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(str(t) for t in test)


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


# --- the services ---------------------------------------------------------------------


def test_all_services_are_declared(services: dict[str, dict[str, Any]]) -> None:
    missing = set(ALL_SERVICES) - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    image = kafka["image"]
    assert image.startswith("apache/kafka:"), image
    assert re.fullmatch(r"apache/kafka:[34]\.\d+\.\d+", image), f"pin a real release, not {image}"
    env = _env(kafka)
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert {"broker", "controller"} <= roles
    node_id = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = _listeners(env["KAFKA_LISTENERS"])
    assert controller in listeners, "the controller listener must be bound"
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == node_id
    assert int(voter.rpartition(":")[2]) == listeners[controller][1]
    protocol_map = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocol_map), "every listener needs a security protocol"
    assert controller not in _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env.get("CLUSTER_ID"), "the apache/kafka image formats KRaft storage with CLUSTER_ID"


def test_postgres_has_a_volume_and_pg_isready(services: dict[str, dict[str, Any]]) -> None:
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:16")
    assert "pg_isready" in _healthcheck_text(pg)
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pg.get("volumes", []))


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name in ALL_SERVICES:
        if name == "migrate":
            continue
        hc = services[name].get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"


def test_app_services_are_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in ("migrate", *APP_SERVICES):
        build = services[name].get("build")
        assert build, f"{name} is not built from the Dockerfile"
        context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else (
            build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        assert (COMPOSE_FILE.parent / context / dockerfile).resolve() == DOCKERFILE


def test_dependencies_wait_for_health_and_migration(services: dict[str, dict[str, Any]]) -> None:
    assert _depends_on(services["migrate"]).get("postgres") == "service_healthy"
    assert services["migrate"].get("restart", "no") == "no", "a one-shot must not restart"
    for name in APP_SERVICES:
        deps = _depends_on(services[name])
        assert deps.get("kafka") == "service_healthy", f"{name} must wait for a healthy broker"
        assert services[name].get("restart") == "unless-stopped"
    for name in ("ingest", "notifier"):
        deps = _depends_on(services[name])
        assert deps.get("postgres") == "service_healthy", name
        assert deps.get("migrate") == "service_completed_successfully", name


def test_app_services_reach_kafka_on_its_internal_listener(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka_env = _env(services["kafka"])
    kafka_names = {"kafka", services["kafka"].get("hostname", "kafka")}
    internal = [
        f"{host}:{port}"
        for host, port in _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"]).values()
        if host in kafka_names
    ]
    assert len(internal) == 1, f"expected one listener advertised as the kafka service: {internal}"
    for name in APP_SERVICES:
        assert _env(services[name]).get("KAFKA_BOOTSTRAP_SERVERS") == internal[0], name


def test_database_url_points_at_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    pg_env = _env(services["postgres"])
    for name in NEEDS_DATABASE:
        url = _env(services[name]).get("DATABASE_URL")
        assert url, f"{name} needs DATABASE_URL"
        assert url == (
            f"postgresql://{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}"
            f"@postgres:5432/{pg_env['POSTGRES_DB']}"
        ), name


def test_commands_are_real_cli_subcommands(services: dict[str, dict[str, Any]]) -> None:
    parser = build_parser()
    for name in ("migrate", *APP_SERVICES):
        args = parser.parse_args(_command(services[name]))
        assert args.command == name, f"{name} runs `livetriage {args.command}`"
    assert set(APP_SERVICES) == set(ROLES)


def test_service_env_is_valid_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("migrate", *APP_SERVICES):
        settings = settings_from_env(_env(services[name]), monkeypatch)
        if name in NEEDS_DATABASE:
            settings.require_database()
        if name in APP_SERVICES:
            settings.require_kafka()


def test_healthchecks_probe_what_the_service_serves(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        probe = _healthcheck_text(services[name])
        assert "curl" not in probe and "wget" not in probe, "python:3.11-slim has neither"
        settings = settings_from_env(_env(services[name]), monkeypatch)
        if name == "notifier":
            assert settings.api_host == "0.0.0.0", "the API must be reachable from outside"
            assert f"127.0.0.1:{settings.api_port}/readyz" in probe
            published = [str(p) for p in services[name].get("ports", [])]
            assert any(p.endswith(f":{settings.api_port}") for p in published), published
        else:
            assert settings.metrics_port > 0, f"{name} needs LIVETRIAGE_METRICS_PORT for its probe"
            assert f"127.0.0.1:{settings.metrics_port}/metrics" in probe


def test_scalable_services_have_no_fixed_name_or_host_port(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("ingest", "triage"):
        assert "container_name" not in services[name], f"{name} could not be scaled"
        assert not services[name].get("ports"), f"{name} publishes host ports: cannot scale"


# --- the image ------------------------------------------------------------------------


def test_dockerfile_runs_livetriage_as_non_root() -> None:
    assert DOCKERFILE.is_file()
    instructions = _dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms and froms[-1].split()[0] == "python:3.11-slim"
    entrypoint = [args for word, args in instructions if word == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["livetriage"]
    cmd = [args for word, args in instructions if word == "CMD"]
    assert cmd, "a default command"
    build_parser().parse_args(json.loads(cmd[-1]))
    user = [args for word, args in instructions if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert any(word == "RUN" and "pip install ." in args for word, args in instructions)


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".livetriage", "bench/out"} <= ignored


# --- the real tool, when installed ----------------------------------------------------


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the `docker compose` plugin is on PATH")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"{' '.join(cli)} config failed:\n{result.stderr}"


# --- monitoring: Prometheus and Grafana come up with the system ---------------------------


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    out = {}
    for v in service.get("volumes", []):
        src, dst, *_ = v.split(":")
        if src.startswith("./"):
            out[dst] = ROOT / src
    return out


def _image_is_pinned(image: str) -> bool:
    return ":" in image and not image.endswith((":latest", ":main"))


def test_prometheus_loads_the_repo_config_and_every_rule_file(services: dict[str, dict[str, Any]]) -> None:
    prom = services["prometheus"]
    assert _image_is_pinned(prom["image"]), prom["image"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in prom["command"] if "=" in a)
    mounts = _mounts(prom)
    config_path = mounts[flags["config.file"]]
    assert config_path == ROOT / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:  # relative to the config file, in the container too
        in_container = str(Path(flags["config.file"]).parent / rule_file)
        assert in_container in mounts and mounts[in_container].is_file(), rule_file
    assert any(v.endswith(":" + flags["storage.tsdb.path"]) for v in prom["volumes"]), "data on a volume"


def test_grafana_provisions_the_datasource_and_the_dashboard(services: dict[str, dict[str, Any]]) -> None:
    graf = services["grafana"]
    assert _image_is_pinned(graf["image"]), graf["image"]
    mounts = _mounts(graf)
    provisioning = mounts["/etc/grafana/provisioning"]
    (ds,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert ds["type"] == "prometheus" and ds["isDefault"] is True
    host, port = ds["url"].removeprefix("http://").split(":")
    assert host in services and port == "9090" and "prometheus" in host
    (provider,) = yaml.safe_load((provisioning / "dashboards/livetriage.yml").read_text())["providers"]
    dashboards = [m for c, m in mounts.items() if Path(c).parent == Path(provider["options"]["path"])]
    assert dashboards == [ROOT / "deploy/grafana/livetriage.json"]
    dashboard = json.loads(dashboards[0].read_text())
    # panels ask for ${DS_PROMETHEUS}: provisioned, a datasource variable of that name resolves it
    (var,) = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert var["type"] == "datasource" and var["query"] == ds["type"]
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounts[home] == dashboards[0]
