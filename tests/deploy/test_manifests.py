"""deploy/k8s: every manifest validates against a pinned Kubernetes schema in strict mode,
and the properties that matter across files hold (drain timing, probes, labels, metric)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from infra.metrics import REGISTRY
from infra.settings import Settings
from responder.server.app import create_app
from responder.server.drain import SHUTDOWN_MARGIN_S
from tests.support.deploy import (
    K8S,
    SECRET_NAMES,
    known_env_names,
    kustomize_resources,
    load_docs,
    manifest_files,
)

# The Kubernetes API version the manifests are checked against (kubernetes-validate ships its
# schemas; strict mode rejects fields the schema does not define).
K8S_VERSION = "1.33"

Resources = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def resources() -> Resources:
    return kustomize_resources()


@pytest.fixture(scope="module")
def example_secret() -> dict[str, Any]:
    (doc,) = load_docs(K8S / "secret.example.yaml")
    return doc


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def _container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def _env(container: dict[str, Any], resources: Resources, secret: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: envFrom sources in order, then env entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(resources[("ConfigMap", source["configMapRef"]["name"])]["data"])
        if "secretRef" in source:
            assert source["secretRef"]["name"] == secret["metadata"]["name"]
            env.update(secret["stringData"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", "<from valueFrom>")
    return env


def _workloads(resources: Resources) -> dict[str, dict[str, Any]]:
    return {name: doc for (kind, name), doc in resources.items() if kind in ("Deployment", "StatefulSet")}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _prestop_sleep_s(container: dict[str, Any]) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return float(command[1])


# --- schema validation ---------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_validator_rejects_unknown_field_and_wrong_type(resources: Resources) -> None:
    deployment = resources[("Deployment", "responder")]
    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")  # a typo kubectl would drop
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(misspelt, K8S_VERSION, strict=True)
    # strict mode is what catches it: the lax schema lets unknown fields through
    kubernetes_validate.validate(misspelt, K8S_VERSION, strict=False)

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret(resources: Resources) -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    expected = {p.name for p in manifest_files() if not p.name.endswith(".example.yaml")}
    assert listed == expected
    kinds = {kind for kind, _ in resources}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"ConfigMap", "StatefulSet"} <= kinds
    assert ("Secret", "responder-secrets") not in resources  # applied out of band, never from git
    # the image name kustomize rewrites is the one the containers use, and it is pinned
    (image,) = kustomization["images"]
    assert image["newTag"] and image["newTag"] != "latest"
    for workload in _workloads(resources).values():
        for c in workload["spec"]["template"]["spec"]["containers"]:
            repo, _, tag = c["image"].rpartition(":")
            assert repo and tag and tag != "latest", c["image"]
    ours = [c for w in _workloads(resources).values() for c in w["spec"]["template"]["spec"]["containers"]]
    assert any(c["image"].split(":")[0] == image["name"] for c in ours)


# --- draining and probes ---------------------------------------------------------------------


def test_grace_period_covers_prestop_and_drain(resources: Resources, example_secret: dict[str, Any]) -> None:
    deployment = resources[("Deployment", "responder")]
    container = _container(deployment, "responder")
    env = _env(container, resources, example_secret)
    drain_s = float(env["RESPONDER_DRAIN_S"])
    assert drain_s > 0
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    exit_s = _prestop_sleep_s(container) + drain_s + SHUTDOWN_MARGIN_S  # by then the process is gone
    assert grace >= exit_s + 5, "SIGKILL would cut live calls or their shutdown short"
    assert _prestop_sleep_s(container) >= 1


def test_probes_hit_routes_the_app_serves(resources: Resources) -> None:
    deployment = resources[("Deployment", "responder")]
    container = _container(deployment, "responder")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert args[0] == "serve" and int(args[args.index("--port") + 1]) == ports["http"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    routes = {r.canonical for r in create_app(Settings()).router.resources()}
    assert {"/readyz", "/healthz", annotations["prometheus.io/path"]} <= routes


def test_every_workload_runs_as_non_root_and_locked_down(resources: Resources) -> None:
    for name, workload in _workloads(resources).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
        # our image writes nothing but temp files: /tmp is a writable emptyDir
        if workload["kind"] == "Deployment":
            tmp = {m["mountPath"]: m["name"] for c in pod["containers"] for m in c["volumeMounts"]}
            volume = next(v for v in pod["volumes"] if v["name"] == tmp["/tmp"])
            assert "emptyDir" in volume, name


# --- selectors, scaling ------------------------------------------------------------------------


def test_services_and_pdbs_select_exactly_their_workload(resources: Resources) -> None:
    workloads = _workloads(resources)
    pairs = {
        ("Service", "responder"): "responder",
        ("PodDisruptionBudget", "responder"): "responder",
        ("Service", "responder-supervisor"): "responder-supervisor",
        ("PodDisruptionBudget", "responder-supervisor"): "responder-supervisor",
        ("Service", "redis"): "redis",
    }
    assert {k for k in resources if k[0] in ("Service", "PodDisruptionBudget")} == set(pairs)
    for key, target in pairs.items():
        spec = resources[key]["spec"]
        selector = spec["selector"] if key[0] == "Service" else spec["selector"]["matchLabels"]
        for name, workload in workloads.items():
            assert _selects(selector, _pod_labels(workload)) == (name == target), (key, name)
        if key[0] == "Service":  # named target ports exist on the selected containers
            containers = workloads[target]["spec"]["template"]["spec"]["containers"]
            port_names = {p["name"] for c in containers for p in c["ports"]}
            assert {p["targetPort"] for p in spec["ports"]} <= port_names
    for name, workload in workloads.items():  # each workload's own selector matches its pods
        assert _selects(workload["spec"]["selector"]["matchLabels"], _pod_labels(workload)), name
    service = resources[("Service", "responder")]["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 80


def test_hpa_scales_the_deployment_on_an_exported_gauge(
    resources: Resources, example_secret: dict[str, Any]
) -> None:
    hpa = resources[("HorizontalPodAutoscaler", "responder")]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) in resources and target["apiVersion"] == "apps/v1"
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    exported = {f.name: f.type for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())}
    assert exported.get(name) == "gauge", f"{name} is not a gauge the service exports"
    # an average below what one pod admits, so that scaling starts before calls are refused
    deployment = resources[(target["kind"], target["name"])]
    env = _env(_container(deployment, "responder"), resources, example_secret)
    average = float(metric["pods"]["target"]["averageValue"])
    assert 0 < average < int(env["RESPONDER_MAX_CONCURRENT_CALLS"])
    pdb = resources[("PodDisruptionBudget", "responder")]["spec"]
    assert hpa["minReplicas"] >= 2 and pdb["maxUnavailable"] < hpa["minReplicas"]
    readme = (K8S.parent / "README.md").read_text(encoding="utf-8")
    assert f"^{name}$" in readme, "the prometheus-adapter rule for the HPA metric is documented"


# --- configuration -------------------------------------------------------------------------------


def test_config_and_secret_names_are_settings_and_values_parse(
    resources: Resources, example_secret: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = known_env_names()
    config = resources[("ConfigMap", "responder-config")]["data"]
    assert set(config) <= known, set(config) - known
    assert set(example_secret["stringData"]) <= known, set(example_secret["stringData"]) - known
    assert SECRET_NAMES <= set(example_secret["stringData"])
    assert not SECRET_NAMES & set(config), "secrets belong in the Secret"
    assert all(v.startswith("EXAMPLE-") for v in example_secret["stringData"].values())
    for workload in _workloads(resources).values():
        for c in workload["spec"]["template"]["spec"]["containers"]:
            assert {e["name"] for e in c.get("env", [])} <= known
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the ConfigMap's values are valid for the service
    assert settings.drain_s == float(config["RESPONDER_DRAIN_S"])
    assert 0 < settings.drain_goodbye_s < settings.drain_s
    assert settings.log_format == "json"
    assert settings.public_url and settings.public_url.startswith("https://")


def test_responder_reaches_redis_and_supervisor_through_their_services(
    resources: Resources, example_secret: dict[str, Any]
) -> None:
    responder = _env(
        _container(resources[("Deployment", "responder")], "responder"), resources, example_secret
    )
    redis_url = urlsplit(responder["REDIS_URL"])
    redis_service = resources[("Service", redis_url.hostname or "")]["spec"]
    assert redis_url.port in {p["port"] for p in redis_service["ports"]}
    assert redis_service["clusterIP"] == "None"  # headless: the StatefulSet's governing Service
    assert resources[("StatefulSet", "redis")]["spec"]["serviceName"] == redis_url.hostname

    sup_url = urlsplit(responder["RESPONDER_SUPERVISOR_URL"])
    sup_service = resources[("Service", sup_url.hostname or "")]["spec"]
    (port,) = [p for p in sup_service["ports"] if p["port"] == sup_url.port]
    supervisor = _container(resources[("Deployment", "responder-supervisor")], "supervisor")
    container_port = next(p["containerPort"] for p in supervisor["ports"] if p["name"] == port["targetPort"])
    args = supervisor["args"]
    assert args[:2] == ["supervisor", "serve"] and int(args[args.index("--port") + 1]) == container_port
    sup_env = _env(supervisor, resources, example_secret)
    assert "RESPONDER_SUPERVISOR_TOKEN" in sup_env and "RESPONDER_SUPERVISOR_TOKEN" in responder
    assert "RESPONDER_SUPERVISOR_URL" not in sup_env  # the supervisor must not call itself
    sup_pod = resources[("Deployment", "responder-supervisor")]["spec"]["template"]["spec"]
    assert (
        sup_pod["terminationGracePeriodSeconds"]
        > _prestop_sleep_s(supervisor) + Settings().supervisor_deadline_s
    )


def _directives(text: str) -> list[str]:
    return [
        " ".join(line.split())
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_redis_statefulset_persists_with_aof(resources: Resources) -> None:
    statefulset = resources[("StatefulSet", "redis")]
    assert statefulset["spec"]["replicas"] == 1
    conf = resources[("ConfigMap", "redis-config")]["data"]["redis.conf"]
    assert _directives(conf) == _directives((K8S.parent / "redis.conf").read_text(encoding="utf-8"))
    assert "appendonly yes" in _directives(conf)
    assert "maxmemory-policy noeviction" in _directives(conf)
    container = _container(statefulset, "redis")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    args = container["args"]
    assert args[0] == "redis-server" and args[1] == f"{mounts['config']}/redis.conf"
    assert args[args.index("--dir") + 1] == mounts["data"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"]
    config_volume = next(
        v for v in statefulset["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    )
    assert (("ConfigMap", config_volume["configMap"]["name"])) in resources


def test_supervisor_probes_hit_routes_its_service_serves(resources: Resources) -> None:
    from supervisor.service import create_service_app

    deployment = resources[("Deployment", "responder-supervisor")]
    container = _container(deployment, "supervisor")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    settings = Settings(supervisor_token=SecretStr("t" * 32))
    routes = {r.canonical for r in create_service_app(settings, host="0.0.0.0").router.resources()}
    assert {"/readyz", "/healthz", annotations["prometheus.io/path"]} <= routes
