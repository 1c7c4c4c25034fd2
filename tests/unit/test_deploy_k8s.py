"""The Kubernetes manifests (deploy/k8s/) are valid and wired to each other and to the code.

Every document is validated strictly (unknown fields fail) against the Kubernetes JSON
schemas that ``kubernetes-validate`` bundles, so no cluster is needed. On top of the schema,
the cross-references a cluster would only report at run time are checked: what each
workload refers to exists, its role is a real ``livetriage`` subcommand, its probes hit a
declared port, and no consumer group is scaled past the topic partitions.
``kubectl kustomize`` runs when kubectl is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from livetriage.cli import build_parser
from livetriage.runtime import ROLES
from services.notifier.auth import prefix_of
from services.notifier.routing import load_routing
from shared.settings import Settings
from tests.helpers import settings_from_env

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
NAMESPACE = "livetriage"
IMAGE = "livetriage:latest"
UID = 10001
CLUSTER_SCOPED = {"Namespace"}
WORKLOAD_KINDS = {"Deployment", "Job"}
ROLE_COMMANDS = {*ROLES, "migrate"}

Doc = dict[str, Any]


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    out = [d for p in _manifest_files() for d in _load(p)]
    assert out, f"no manifests in {K8S}"
    return out


def _of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _pod_specs(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, its pod spec) for every Deployment and Job."""
    for d in docs:
        if d["kind"] in WORKLOAD_KINDS:
            yield d, d["spec"]["template"]["spec"]


def _containers(pod: Doc) -> list[Doc]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _config_env(docs: list[Doc]) -> dict[str, str]:
    """What envFrom puts in the environment: every ConfigMap and Secret key that is an
    environment variable name (the routing ConfigMap holds a file, mounted instead)."""
    env: dict[str, str] = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            data = d.get("data", {})
        elif d["kind"] == "Secret":
            data = d.get("stringData", {})
        else:
            continue
        env.update({k: str(v) for k, v in data.items() if k.replace("_", "").isalnum()})
    return env


def _partitions(docs: list[Doc], monkeypatch: pytest.MonkeyPatch) -> int:
    return settings_from_env(_config_env(docs), monkeypatch).topic_partitions


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- the files ------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization.get("namespace") == NAMESPACE
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert set(listed) == {p.name for p in _manifest_files()}


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_every_document_is_valid_kubernetes(path: Path) -> None:
    for doc in _load(path):
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:  # the full message dumps the schema
            where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
            pytest.fail(f"{path.name}: {doc.get('kind')} {doc['metadata'].get('name')}: "
                        f"{where}: {exc.message}")


def test_names_are_unique_and_namespaced(docs: list[Doc]) -> None:
    seen = set()
    for d in docs:
        key = (d["kind"], d["metadata"]["name"])
        assert key not in seen, f"{key} is defined twice"
        seen.add(key)
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"].get("namespace") == NAMESPACE, key
    assert NAMESPACE in _of_kind(docs, "Namespace")


# --- references -----------------------------------------------------------------------


def test_references_point_at_defined_objects(docs: list[Doc]) -> None:
    config_maps, secrets = _of_kind(docs, "ConfigMap"), _of_kind(docs, "Secret")
    accounts = _of_kind(docs, "ServiceAccount")
    for workload, pod in _pod_specs(docs):
        name = workload["metadata"]["name"]
        assert pod.get("serviceAccountName") in accounts, f"{name}: unknown service account"
        for c in _containers(pod):
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, name
            for var in c.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    cm = config_maps[ref["configMapKeyRef"]["name"]]
                    assert ref["configMapKeyRef"]["key"] in cm["data"], name
                if "secretKeyRef" in ref:
                    secret = secrets[ref["secretKeyRef"]["name"]]
                    assert ref["secretKeyRef"]["key"] in secret["stringData"], name
            volumes = {v["name"] for v in pod.get("volumes", [])}
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: undeclared volume {mount['name']}"
        for v in pod.get("volumes", []):
            if "configMap" in v:
                cm = config_maps[v["configMap"]["name"]]
                for item in v["configMap"].get("items", []):
                    assert item["key"] in cm["data"], f"{name}: no {item['key']} in the ConfigMap"
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets, name


def test_selectors_select_their_pods(docs: list[Doc]) -> None:
    deployments = _of_kind(docs, "Deployment")
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for name, d in deployments.items():
        assert _matches(d["spec"]["selector"]["matchLabels"], pod_labels[name]), name
    for kind in ("PodDisruptionBudget",):
        for name, d in _of_kind(docs, kind).items():
            selected = [n for n, labels in pod_labels.items()
                        if _matches(d["spec"]["selector"]["matchLabels"], labels)]
            assert len(selected) == 1, f"{kind} {name} selects {selected}"
    for name, svc in _of_kind(docs, "Service").items():
        selected = [n for n, labels in pod_labels.items()
                    if _matches(svc["spec"]["selector"], labels)]
        assert len(selected) == 1, f"Service {name} selects {selected}"
        pod = deployments[selected[0]]["spec"]["template"]["spec"]
        ports = {p["name"]: p["containerPort"]
                 for c in pod["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            assert target in ports or target in ports.values(), f"Service {name}: port {target}"
    for name, hpa in _of_kind(docs, "HorizontalPodAutoscaler").items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments, name


def test_every_pod_has_a_unique_selector_label_set(docs: list[Doc]) -> None:
    """Two workloads whose selectors overlap would fight over each other's pods."""
    deployments = _of_kind(docs, "Deployment")
    for a, da in deployments.items():
        for b, db in deployments.items():
            if a != b:
                assert not _matches(da["spec"]["selector"]["matchLabels"],
                                    db["spec"]["template"]["metadata"]["labels"]), (a, b)


# --- the workloads --------------------------------------------------------------------


def test_containers_run_livetriage_roles(docs: list[Doc]) -> None:
    parser = build_parser()
    roles = {}
    for workload, pod in _pod_specs(docs):
        for c in pod["containers"]:
            assert c["image"] == IMAGE, c["name"]
            assert "command" not in c, "the image's ENTRYPOINT is livetriage; set args only"
            args = parser.parse_args(c["args"])
            assert args.command in ROLE_COMMANDS, c["args"]
            roles[args.command] = workload["kind"]
    assert roles == {"migrate": "Job", **{r: "Deployment" for r in ROLES}}


def test_pods_are_locked_down(docs: list[Doc]) -> None:
    for workload, pod in _pod_specs(docs):
        name = workload["metadata"]["name"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID, name
        assert pod.get("automountServiceAccountToken") is False, name
        mounts_tmp = False
        for c in _containers(pod):
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc["capabilities"]["drop"] == ["ALL"], name
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            mounts_tmp |= any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", []))
        assert mounts_tmp, f"{name}: a read-only root needs a writable /tmp"
        tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], name


def test_services_stop_gracefully_and_are_scraped(
    docs: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_env(_config_env(docs), monkeypatch)
    for name, d in _of_kind(docs, "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == 30, name
        notes = d["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true", name
        role = pod["containers"][0]["args"][0]
        expected = settings.api_port if role == "notifier" else settings.metrics_port
        assert notes["prometheus.io/port"] == str(expected), name
        assert notes["prometheus.io/path"] == "/metrics", name
        ports = [p["containerPort"] for p in pod["containers"][0]["ports"]]
        assert expected in ports, f"{name} scrapes a port it does not declare"


def test_probes_hit_declared_ports_and_served_paths(
    docs: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from_env(_config_env(docs), monkeypatch)
    assert settings.metrics_port > 0, "ingest/triage probes need LIVETRIAGE_METRICS_PORT"
    for name, d in _of_kind(docs, "Deployment").items():
        container = d["spec"]["template"]["spec"]["containers"][0]
        role = container["args"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for kind in ("livenessProbe", "readinessProbe"):
            assert kind in container, f"{name} has no {kind}"
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if kind not in container:
                continue
            get = container[kind]["httpGet"]
            port = ports.get(get["port"], get["port"])
            assert port in ports.values(), f"{name}.{kind}: port {get['port']} is not declared"
            if role == "notifier":
                assert port == settings.api_port, name
            else:
                assert port == settings.metrics_port and get["path"] == "/metrics", name
        if role == "notifier":
            assert settings.api_host == "0.0.0.0", "the kubelet probes the pod IP"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_no_group_scales_past_the_partitions(
    docs: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    partitions = _partitions(docs, monkeypatch)
    for name, d in _of_kind(docs, "Deployment").items():
        assert d["spec"].get("replicas", 1) <= partitions, name
    hpas = _of_kind(docs, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {
        "livetriage-ingest", "livetriage-triage"}
    for name, hpa in hpas.items():
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"] <= partitions, name
        target = _of_kind(docs, "Deployment")[spec["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], f"{name}: re-applying would reset the HPA's count"


def test_every_deployment_has_a_disruption_budget(docs: list[Doc]) -> None:
    covered = set()
    for pdb in _of_kind(docs, "PodDisruptionBudget").values():
        for name, d in _of_kind(docs, "Deployment").items():
            labels = d["spec"]["template"]["metadata"]["labels"]
            if _matches(pdb["spec"]["selector"]["matchLabels"], labels):
                covered.add(name)
    assert covered == set(_of_kind(docs, "Deployment"))


# --- configuration --------------------------------------------------------------------


def test_config_is_valid_settings(docs: list[Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    env = _config_env(docs)
    unknown = [k for k in env if k.startswith("LIVETRIAGE_")
               and k.removeprefix("LIVETRIAGE_").lower() not in Settings.model_fields]
    assert not unknown, f"not settings (typos are silently ignored): {unknown}"
    settings = settings_from_env(env, monkeypatch)
    settings.require_kafka()
    settings.require_database()


def test_secret_is_a_template_that_fails_closed(docs: list[Doc]) -> None:
    (secret,) = _of_kind(docs, "Secret").values()
    values = secret["stringData"]
    # the routing file's channel credentials too (its ${VAR} references)
    assert set(values) == {"DATABASE_URL", "LIVETRIAGE_BOOTSTRAP_API_KEY", "PD_TNS_ROUTING_KEY",
                           "SLACK_OPS_WEBHOOK_URL"}
    assert all("REPLACE_ME" in v for v in values.values()), "placeholders must be obvious"
    # a placeholder admin key that worked would be a published credential
    assert prefix_of(values["LIVETRIAGE_BOOTSTRAP_API_KEY"]) is None
    for cm in _of_kind(docs, "ConfigMap").values():
        assert not set(values) & set(cm["data"]), "credentials belong in the Secret"


def test_routing_file_is_valid_and_mounted_where_settings_point(
    docs: list[Doc], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_from_env(_config_env(docs), monkeypatch)
    assert settings.routing_file is not None
    notifier = _of_kind(docs, "Deployment")["livetriage-notifier"]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in notifier["containers"][0]["volumeMounts"]}
    found = None
    for v in notifier["volumes"]:
        if "configMap" in v and v["name"] in mounts:
            for item in v["configMap"]["items"]:
                if Path(mounts[v["name"]]) / item["path"] == settings.routing_file:
                    found = _of_kind(docs, "ConfigMap")[v["configMap"]["name"]]["data"][item["key"]]
    assert found is not None, f"nothing is mounted at {settings.routing_file}"
    assert "${" in found, "credentials come from the environment, not the ConfigMap"
    # loaded as the notifier loads it, with exactly the environment its container gets: a
    # ${VAR} nobody provides would stop it at start
    path = tmp_path / "routing.yaml"
    path.write_text(found)
    routing = load_routing(path, env=_container_env(docs, notifier["containers"][0]))
    assert routing.channels, "the example should show channels"
    assert all("REPLACE" in str(c.model_dump()) for c in routing.channels.values())


def _container_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The environment a container gets from its envFrom ConfigMaps/Secrets and env values."""
    maps = {**_of_kind(docs, "ConfigMap"), **_of_kind(docs, "Secret")}
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef") or src.get("secretRef")
        d = maps[ref["name"]]
        env.update({k: str(v) for k, v in (d.get("data") or d.get("stringData") or {}).items()})
    env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return env


# --- the real tool, when installed ----------------------------------------------------


def test_kubectl_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH")
    result = subprocess.run([kubectl, "kustomize", str(K8S)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(built) == sum(len(_load(p)) for p in _manifest_files())
