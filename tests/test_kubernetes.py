"""deploy/kubernetes: every overlay rendered with the real `kubectl kustomize`, every object validated against its
schema, and the behaviour that matters asserted on the rendered objects.

- core kinds (ConfigMap, Service, Deployment, StatefulSet) with kubernetes-validate's bundled schemas (offline), in
  strict mode (unknown fields are errors), for the Kubernetes versions of KUBERNETES_VERSIONS;
- the Prometheus Operator's kinds (ServiceMonitor, PrometheusRule, Probe) against the openAPIV3Schema of the CRDs
  kept in deploy/kubernetes/schemas/prometheus-operator (copied from the operator's repository, with its licence),
  objects closed to unknown fields where the CRD does not preserve them;
- the PrometheusRules equal config/prometheus/rules/*.rules.yml, and the dashboards ConfigMap dashboards/*.json.

kubectl is not installed by scripts/test: the machine image ships it (it brings kustomize). Without it these tests
skip locally and fail under CI=true.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import IN_CI, ROOT

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS_DIR = KUBE / "overlays"
CRD_DIR = KUBE / "schemas" / "prometheus-operator"
RULES_DIR = ROOT / "config" / "prometheus" / "rules"
BASE_CONFIG = KUBE / "base" / "config.yaml"

# The Kubernetes versions whose schemas (bundled with kubernetes-validate) every core object must satisfy: the
# oldest minor still common on managed clusters and a recent one.
KUBERNETES_VERSIONS = ("1.30", "1.35")
MONITORING_GROUP = "monitoring.coreos.com"

EXPECTED_OVERLAYS = {"single", "sharded", "prometheus-operator", "multi-region/eu-west", "multi-region/us-east"}
OVERLAYS = sorted(p.parent.relative_to(OVERLAYS_DIR).as_posix() for p in OVERLAYS_DIR.rglob("kustomization.yaml"))
RENDERED = ["base", *OVERLAYS]
REGIONS = sorted(o.split("/", 1)[1] for o in OVERLAYS if o.startswith("multi-region/"))

# bench/README.md "Latest figures" (the installed daemon, default settings): peak RSS at 500 streams open and at
# 1,000 asked (the core saturated).
RSS_500_STREAMS = 98e6
RSS_1000_STREAMS = 148e6
# docs/benchmark.md "Steady state": 1,000 targets, each with its full history, ~200 streams open (MiB)
RSS_STEADY_1000_TARGETS = 142 * 2**20


# ---- helpers ---------------------------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path:
        return path
    message = "kubectl is not installed (it renders the kustomizations; the machine image ships it)"
    if IN_CI:
        pytest.fail(message + " — these tests must not skip in CI")
    pytest.skip(message)


def kustomize(directory: Path) -> list[dict]:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


@cache
def _render(name: str) -> tuple[dict, ...]:
    return tuple(kustomize(KUBE / "base" if name == "base" else OVERLAYS_DIR / name))


def render(name: str) -> list[dict]:
    return copy.deepcopy(list(_render(name)))


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def workload(objects: list[dict]) -> dict:
    found = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [o["kind"] for o in found]
    return found[0]


def container(objects: list[dict]) -> dict:
    containers = workload(objects)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "sse-monitor")


def env(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(objects).get("env", [])}


def config_map(objects: list[dict]) -> dict:
    """The ConfigMap holding config.yaml that the workload mounts."""
    volumes = workload(objects)["spec"]["template"]["spec"]["volumes"]
    names = {v["configMap"]["name"] for v in volumes if "configMap" in v}
    found = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"] in names]
    assert len(found) == 1, names
    return found[0]


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (128Mi, 400m, 1, 1G) as a number: bytes, or cores."""
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def dockerfile_instruction(name: str) -> str:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    found = [line.split(None, 1)[1] for line in lines if line.startswith(name + " ")]
    return found[-1]  # the final stage's


# ---- CRD schemas -----------------------------------------------------------------------------------------------


def _closed(schema: dict) -> dict:
    """The schema with every object that lists its properties closed to others, as strict field validation is, and
    its regular expressions in Python's dialect."""
    schema = dict(schema)
    pattern = schema.get("pattern")
    if pattern and "(?i)" in pattern[1:]:
        # Go's RE2 takes a flag group anywhere (`^(?i)(abort|warn)?$`); Python's re only at the start
        schema["pattern"] = "(?i)" + pattern.replace("(?i)", "")
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    for key, value in schema.items():
        if key == "properties":
            schema[key] = {name: _closed(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            schema[key] = _closed(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            schema[key] = [_closed(sub) for sub in value]
    return schema


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator of the CRD's served version's schema."""
    validators = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        assert crd["kind"] == "CustomResourceDefinition", path
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _closed(version["schema"]["openAPIV3Schema"])
                # OpenAPI 3.0 schemas are JSON Schema draft 4 in their keywords (boolean exclusiveMinimum ...)
                jsonschema.Draft4Validator.check_schema(schema)
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def validate_custom(obj: dict) -> None:
    validator = crd_validators().get((obj["apiVersion"], obj["kind"]))
    assert validator is not None, f"no CRD schema kept for {obj['apiVersion']} {obj['kind']} (see {CRD_DIR})"
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{obj['kind']} {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def validate_core(obj: dict, version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.absolute_path))  # the error itself (a jsonschema ValidationError) says where
        pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {version}) {path}: {exc.message}")


# ---- every overlay: renders, validates ---------------------------------------------------------------------------


def test_the_overlays_the_issue_asks_for_exist():
    assert EXPECTED_OVERLAYS <= set(OVERLAYS), OVERLAYS
    assert len(REGIONS) >= 2


@pytest.mark.parametrize("name", RENDERED)
def test_every_object_validates_against_its_schema(name):
    objects = render(name)
    assert objects
    for obj in objects:
        group = obj["apiVersion"].split("/")[0]
        if group == MONITORING_GROUP:
            validate_custom(obj)
        else:
            for version in KUBERNETES_VERSIONS:
                validate_core(obj, version)


@pytest.mark.parametrize("name", RENDERED)
def test_objects_are_unique_and_labelled(name):
    objects = render(name)
    keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), keys
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "sse-monitor", obj["metadata"]


def test_the_validators_reject_what_the_api_server_would():
    """Strictness is real: a misspelt field fails each validator (so passing above means something)."""
    deployment = copy.deepcopy(workload(render("single")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    deployment = copy.deepcopy(workload(render("single")))
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(pytest.fail.Exception, match=r"spec\.replicas: 'one' is not of type 'integer'"):
        validate_core(deployment, KUBERNETES_VERSIONS[-1])  # the failure names the field

    objects = render("prometheus-operator")
    monitor = copy.deepcopy(one(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrape_interval"] = "15s"  # Prometheus' spelling, not the CRD's
    with pytest.raises(AssertionError, match="scrape_interval"):
        validate_custom(monitor)
    rule = copy.deepcopy(of_kind(objects, "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ninety seconds"
    with pytest.raises(AssertionError):
        validate_custom(rule)
    probe = copy.deepcopy(one(objects, "Probe"))
    del probe["spec"]["prober"]["url"]
    with pytest.raises(AssertionError, match="url"):
        validate_custom(probe)


def test_the_example_probe_validates_against_the_probe_crd():
    probe = yaml.safe_load((ROOT / "config" / "prometheus-operator" / "probe.yaml").read_text())
    assert probe["kind"] == "Probe"
    validate_custom(probe)


def test_the_kept_crds_come_with_the_operators_licence():
    assert "Apache License" in (CRD_DIR / "LICENSE").read_text()
    assert (CRD_DIR / "NOTICE").read_text().strip()
    for path in CRD_DIR.glob("*.yaml"):
        annotations = yaml.safe_load(path.read_text())["metadata"]["annotations"]
        assert annotations["operator.prometheus.io/version"] in (CRD_DIR / "README.md").read_text(), path.name
    kinds = {kind for _, kind in crd_validators()}
    assert kinds == {"ServiceMonitor", "PrometheusRule", "Probe"}


# ---- the daemon's pod, in every overlay ---------------------------------------------------------------------------

WORKLOADS = RENDERED  # each renders exactly one Deployment or StatefulSet


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_container_runs_the_images_command_with_the_mounted_config(name):
    objects = render(name)
    c = container(objects)
    # exec form, the image's ENTRYPOINT (sse-monitor) kept and its CMD spelled out
    assert "command" not in c
    assert dockerfile_instruction("ENTRYPOINT") == '["sse-monitor"]'
    assert c["args"][:3] == json.loads(dockerfile_instruction("CMD"))
    config_path = Path(c["args"][c["args"].index("--config") + 1])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    mount = mounts[str(config_path.parent)]
    assert mount["readOnly"] is True
    cm = config_map(objects)
    assert cm["data"][config_path.name] == BASE_CONFIG.read_text()
    volume = next(v for v in workload(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert re.fullmatch(r"sse-monitor-config-[a-z0-9]{10}", cm["metadata"]["name"]), "a changed config must roll pods"


@pytest.mark.parametrize("name", WORKLOADS)
def test_liveness_and_readiness_probe_the_daemons_paths(name):
    c = container(render(name))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 9108}
    assert yaml.safe_load(BASE_CONFIG.read_text())["server"]["listen"].endswith(":9108")
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
    assert "9108" in dockerfile_instruction("EXPOSE")


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_pod_is_non_root_with_a_read_only_root_filesystem(name):
    objects = render(name)
    pod = workload(objects)["spec"]["template"]["spec"]
    c = container(objects)
    user, group = dockerfile_instruction("USER").split(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for context in (pod["securityContext"], c["securityContext"]):
        assert context["runAsUser"] == int(user) != 0
        assert context["runAsGroup"] == int(group) != 0
    assert pod["securityContext"]["fsGroup"] == int(group)  # the history's volume is the daemon's to write
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc.get("privileged")
    assert pod["automountServiceAccountToken"] is False
    # the only writable places are a bounded scratch /tmp and the run history's directory, the image's data dir
    writable = {m["mountPath"]: m["name"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert set(writable) == {"/tmp", "/var/lib/sse-monitor"}
    assert "SSE_MONITOR_DATA_DIR=/var/lib/sse-monitor" in (ROOT / "Dockerfile").read_text()  # the image's ENV
    workload_spec = workload(objects)["spec"]
    claims = {t["metadata"]["name"] for t in workload_spec.get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = writable["/var/lib/sse-monitor"]
    if name == "sharded":  # each shard's history on its own claim, kept across pods
        assert data in claims and data not in volumes
    else:  # an emptyDir: kept across container restarts (an OOM kill), bounded
        assert quantity(volumes[data]["emptyDir"]["sizeLimit"]) <= 2 * 2**30


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_api_keys_reach_the_environment_from_the_secret(name):
    c = container(render(name))
    assert c["envFrom"] == [{"secretRef": {"name": "sse-monitor-api-keys"}}]  # not optional: no key, no start
    # no key is written into the manifests themselves
    assert not any("KEY" in e["name"] for e in c.get("env", []))


def test_the_config_reads_its_keys_from_the_environment_and_is_valid():
    """base/config.yaml needs ${VAR}s (the Secret's keys); with them set, the real `check-config` accepts it, and
    without them it refuses it."""
    text = BASE_CONFIG.read_text()
    variables = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", text))
    assert {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= variables
    assert not re.search(r"sk-[A-Za-z0-9]{8,}", text)
    clean = {k: v for k, v in os.environ.items() if k not in variables and not k.startswith("SSE_MONITOR_")}
    command = [sys.executable, "-m", "monitor.cli", "check-config", str(BASE_CONFIG)]
    keys = {v: "test-value" for v in variables}
    ok = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, env={**clean, **keys})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, env=clean)
    assert missing.returncode != 0
    assert "OPENAI_API_KEY" in missing.stdout + missing.stderr or "ANTHROPIC_API_KEY" in missing.stdout + missing.stderr


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_daemon_accepts_the_pods_environment(name):
    """The variables the overlays set (SSE_MONITOR_SHARD, SSE_MONITOR_REGION) share the prefix of the config's
    SSE_MONITOR_SECTION__FIELD overrides: the real `check-config` must still accept the config with them set."""
    pod_env = env(render(name))
    variables = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", BASE_CONFIG.read_text()))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SSE_MONITOR_")}
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(BASE_CONFIG)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**clean, **{v: "test-value" for v in variables}, **pod_env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", WORKLOADS)
def test_resources_follow_the_benchmark(name):
    resources = container(render(name))["resources"]
    requests, limits = resources["requests"], resources["limits"]
    config = yaml.safe_load(BASE_CONFIG.read_text())
    assert config["scheduler"]["max_concurrent"] <= 500  # so the 500-stream figure bounds the request below
    # memory: the request holds the default cap's peak (below the 500-stream 98 MB) and 1,000 targets' steady state,
    # the limit the overload's 148 MB
    assert quantity(requests["memory"]) >= max(RSS_500_STREAMS, RSS_STEADY_1000_TARGETS)
    assert quantity(limits["memory"]) >= 1.5 * RSS_1000_STREAMS
    assert quantity(requests["memory"]) < quantity(limits["memory"])
    # cpu: one event loop uses at most one core; a limit under one core would throttle the measurements
    assert quantity(limits["cpu"]) >= 1
    assert 0.33 <= quantity(requests["cpu"]) <= quantity(limits["cpu"])  # 200 streams open take 33 % of a core


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_service_reaches_the_pods(name):
    objects = render(name)
    service = next(s for s in of_kind(objects, "Service") if s["metadata"]["name"] == "sse-monitor")
    labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert workload(objects)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 9108, "protocol": "TCP", "targetPort": "http"}]


# ---- single, sharded, multi-region -------------------------------------------------------------------------------


def test_single_is_one_replica_of_every_target():
    objects = render("single")
    deployment = workload(objects)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two daemons during a rollout
    assert "SSE_MONITOR_SHARD" not in env(objects)
    assert "SSE_MONITOR_REGION" not in env(objects)


def test_sharded_is_a_statefulset_whose_replicas_are_the_shard_count():
    objects = render("sharded")
    assert not of_kind(objects, "Deployment")
    statefulset = workload(objects)
    assert statefulset["kind"] == "StatefulSet"
    shard = env(objects)["SSE_MONITOR_SHARD"]
    k, n = shard.split("/")
    assert k == "auto"  # the ordinal of the pod's hostname, sse-monitor-<K>
    assert int(n) == statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert statefulset["spec"]["serviceName"] in {s["metadata"]["name"] for s in of_kind(objects, "Service")}
    # the pod template is the base's, defined once
    base = render("base")
    assert {k: v for k, v in container(objects).items() if k != "env"} == container(base)
    base_volumes = workload(base)["spec"]["template"]["spec"]["volumes"]
    assert statefulset["spec"]["template"]["spec"]["volumes"] == [v for v in base_volumes if v["name"] != "data"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]  # the history volume, one per shard
    assert claim["metadata"]["name"] == "data" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_every_shard_is_probed_by_exactly_one_pod():
    """The StatefulSet's pods, sse-monitor-0 ... sse-monitor-<N-1>, are the shards 0 ... N-1 of the daemon's
    `auto/N`, and every target of the config belongs to exactly one of them."""
    from monitor.sharding import parse_shard

    objects = render("sharded")
    statefulset = workload(objects)
    pods = [f"{statefulset['metadata']['name']}-{i}" for i in range(statefulset["spec"]["replicas"])]
    shards = [parse_shard(env(objects)["SSE_MONITOR_SHARD"], hostname=pod) for pod in pods]
    targets = [t["name"] for t in yaml.safe_load(BASE_CONFIG.read_text())["targets"]]
    for target in targets:
        assert sum(shard.owns(target) for shard in shards) == 1, target


def test_sharded_replicas_and_n_change_together(tmp_path):
    """Change only the replicas of the sharded overlay: the replacement carries the count into auto/N."""
    copy_root = tmp_path / "kubernetes"
    shutil.copytree(KUBE, copy_root)
    kustomization = copy_root / "overlays" / "sharded" / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count("count: 3") == 1
    kustomization.write_text(text.replace("count: 3", "count: 5"))
    objects = kustomize(copy_root / "overlays" / "sharded")
    assert workload(objects)["spec"]["replicas"] == 5
    assert env(objects)["SSE_MONITOR_SHARD"] == "auto/5"


def test_multi_region_sets_each_region_on_the_same_targets():
    configs = set()
    for region in REGIONS:
        objects = render(f"multi-region/{region}")
        assert env(objects)["SSE_MONITOR_REGION"] == region
        configs.add(config_map(objects)["data"]["config.yaml"])
    assert configs == {BASE_CONFIG.read_text()}  # the same targets everywhere


# ---- prometheus-operator -----------------------------------------------------------------------------------------


def _generate_module():
    spec = importlib.util.spec_from_file_location("sse_monitor_kube_generate", KUBE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date():
    command = [sys.executable, str(KUBE / "generate.py"), "--check"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_check_notices_a_stale_file(tmp_path, monkeypatch):
    generate = _generate_module()
    stale = tmp_path / "prometheusrules.yaml"
    stale.write_text(generate.render_rules().replace("for: 90s", "for: 2m", 1))
    monkeypatch.setattr(generate, "RULES_OUT", stale)
    monkeypatch.setattr(generate, "DASHBOARDS_OUT", tmp_path / "dashboards")
    assert stale in generate.stale_files()
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.stale_files() == []
    assert stale.read_text() == generate.render_rules()


def test_the_prometheus_rules_equal_the_rules_files():
    rules = of_kind(render("prometheus-operator"), "PrometheusRule")
    by_source = {r["metadata"]["annotations"]["sse-monitor.dev/source"]: r for r in rules}
    files = sorted(RULES_DIR.glob("*.rules.yml"))
    assert files
    assert set(by_source) == {p.relative_to(ROOT).as_posix() for p in files}
    for path in files:
        rule = by_source[path.relative_to(ROOT).as_posix()]
        assert rule["spec"] == yaml.safe_load(path.read_text()), f"{rule['metadata']['name']} differs from {path.name}"
        assert rule["metadata"]["namespace"] == "monitoring"


def test_the_servicemonitor_scrapes_the_service_as_the_rules_expect():
    objects = render("prometheus-operator")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert "jobLabel" not in monitor["spec"]
    # the job is the Service's name: the alert SSEMonitorDown asks for up{job="sse-monitor"}
    assert 'up{job="%s"}' % service["metadata"]["name"] in (RULES_DIR / "sse-monitor.rules.yml").read_text()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_dashboards_reach_grafanas_sidecar_unchanged():
    objects = render("prometheus-operator")
    (dashboards,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard")]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    sources = sorted((ROOT / "dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == [p.name for p in sources]
    for path in sources:
        assert dashboards["data"][path.name] == path.read_text()
        assert json.loads(dashboards["data"][path.name])["uid"]


def test_the_probe_asks_the_services_probe_endpoint_with_an_allowed_module():
    objects = render("prometheus-operator")
    probe = one(objects, "Probe")
    service = one(objects, "Service")
    namespace = service["metadata"]["namespace"]
    assert probe["metadata"]["namespace"] == namespace == "monitoring"
    assert probe["spec"]["prober"] == {
        "url": f"{service['metadata']['name']}.{namespace}.svc:{service['spec']['ports'][0]['port']}",
        "path": "/probe",
    }
    config = yaml.safe_load(BASE_CONFIG.read_text())
    module = config["modules"][probe["spec"]["module"]]
    targets = probe["spec"]["targets"]["staticConfig"]["static"]
    assert targets
    for target in targets:  # a target outside allowed_targets would be answered 403
        assert any(target.startswith(prefix) for prefix in module["allowed_targets"] if not prefix.startswith("^"))
    assert probe["spec"]["scrapeTimeout"] < probe["spec"]["interval"]


# ---- the proxy-chain canary (deploy/kubernetes/canary) -----------------------------------------------------------
# A different app than the daemon, from the same image: its own kustomization beside base/ and overlays/ (so the
# daemon's tests above, which glob overlays/, do not see it).

CANARY_DIR = KUBE / "canary"
CANARY_NAME = "sse-monitor-canary"
CANARY_PORT = 8901  # `sse-monitor canary --listen`'s default
# Measured on loopback (deploy/kubernetes/canary/deployment.yaml has the table): the installed canary's worst peak
# RSS, 64 streams at once (its --max-streams default) of 64 KiB events, 80 MiB/s.
CANARY_PEAK_RSS = 52.7e6


@cache
def _render_canary() -> tuple[dict, ...]:
    return tuple(kustomize(CANARY_DIR))


def render_canary() -> list[dict]:
    return copy.deepcopy(list(_render_canary()))


def canary_container(objects: list[dict]) -> dict:
    (c,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def container_port(c: dict, port: str | int) -> int:
    """A probe's or Service's port (a name or a number) as the container port it reaches."""
    if isinstance(port, int):
        assert port in {p["containerPort"] for p in c["ports"]}, port
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def test_the_canary_is_its_own_kustomization_not_an_overlay():
    assert (CANARY_DIR / "kustomization.yaml").is_file()
    assert OVERLAYS_DIR not in CANARY_DIR.parents
    assert not any(o.split("/")[0] == "canary" for o in OVERLAYS)


def test_every_canary_object_validates_against_its_schema():
    objects = render_canary()
    assert sorted(o["kind"] for o in objects) == ["Deployment", "Service"]
    for obj in objects:
        for version in KUBERNETES_VERSIONS:
            validate_core(obj, version)


def test_the_canary_objects_are_unique_and_labelled_as_their_own_app():
    objects = render_canary()
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), keys
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert obj["metadata"]["name"] == CANARY_NAME
        assert labels["app.kubernetes.io/name"] == CANARY_NAME
        assert labels["app.kubernetes.io/part-of"] == "sse-monitor"
    # the daemon's Service (selector app.kubernetes.io/name: sse-monitor) never selects a canary pod, nor the reverse
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    daemon_service = next(s for s in of_kind(render("base"), "Service") if s["metadata"]["name"] == "sse-monitor")
    assert not daemon_service["spec"]["selector"].items() <= pod_labels.items()
    daemon_pod_labels = workload(render("base"))["spec"]["template"]["metadata"]["labels"]
    assert not one(objects, "Service")["spec"]["selector"].items() <= daemon_pod_labels.items()


def test_the_canary_is_one_replica_of_the_daemons_image():
    objects = render_canary()
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert canary_container(objects)["image"] == container(render("base"))["image"]


def test_the_canary_container_runs_the_canary_command():
    c = canary_container(render_canary())
    # exec form, the image's ENTRYPOINT (sse-monitor) kept and its CMD replaced, as the daemon's pod does
    assert "command" not in c
    assert dockerfile_instruction("ENTRYPOINT") == '["sse-monitor"]'
    assert c["args"] == ["canary", "--listen", f"0.0.0.0:{CANARY_PORT}"]


def test_the_canary_probes_ask_healthy_on_the_served_port():
    c = canary_container(render_canary())
    listen_port = int(c["args"][c["args"].index("--listen") + 1].rsplit(":", 1)[1])
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": listen_port}
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/-/healthy"
        assert container_port(c, get["port"]) == listen_port
        assert get.get("scheme", "HTTP") == "HTTP"


def test_the_canary_pod_is_as_hardened_as_the_daemons():
    objects = render_canary()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = canary_container(objects)
    base_pod = workload(render("base"))["spec"]["template"]["spec"]
    user, group = dockerfile_instruction("USER").split(":")
    # the same, but the daemon's fsGroup: the canary writes no volume
    assert pod["securityContext"] == {k: v for k, v in base_pod["securityContext"].items() if k != "fsGroup"}
    assert c["securityContext"] == container(render("base"))["securityContext"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for context in (pod["securityContext"], c["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == int(user) != 0
        assert context["runAsGroup"] == int(group) != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not sc.get("privileged")
    assert pod["automountServiceAccountToken"] is False
    # no config, no Secret: the canary needs neither; the only writable place is a bounded scratch /tmp
    assert "envFrom" not in c and "env" not in c
    assert [m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")] == ["/tmp"]
    (tmp,) = pod["volumes"]
    assert quantity(tmp["emptyDir"]["sizeLimit"]) <= 64 * 2**20


def test_the_canary_resources_follow_the_measurement():
    resources = canary_container(render_canary())["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert quantity(requests["memory"]) >= 1.1 * CANARY_PEAK_RSS
    assert quantity(limits["memory"]) >= 2 * CANARY_PEAK_RSS
    assert quantity(requests["memory"]) < quantity(limits["memory"])
    # one event loop: at most one core; a limit below it would throttle the events' timestamps into their writes
    assert quantity(limits["cpu"]) >= 1
    assert 0 < quantity(requests["cpu"]) <= quantity(limits["cpu"])


def test_the_canary_service_reaches_the_pod_on_the_container_port():
    objects = render_canary()
    service = one(objects, "Service")
    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": CANARY_NAME}
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port == {"name": "http", "port": CANARY_PORT, "protocol": "TCP", "targetPort": "http"}
    assert container_port(canary_container(objects), port["targetPort"]) == CANARY_PORT


def test_the_example_ingress_routes_the_path_to_the_canary_service():
    path = CANARY_DIR / "ingress.example.yaml"
    text = path.read_text()
    ingress = yaml.safe_load(text)
    assert ingress["kind"] == "Ingress"
    for version in KUBERNETES_VERSIONS:
        validate_core(ingress, version)
    # an example only: not applied with the kustomization (it must be the streaming API's own Ingress)
    assert path.name not in yaml.safe_load((CANARY_DIR / "kustomization.yaml").read_text())["resources"]
    assert "Ingress" not in {o["kind"] for o in render_canary()}
    assert "SAME CHAIN AS YOUR" in text and "annotation" in text
    service = one(render_canary(), "Service")
    (rule,) = ingress["spec"]["rules"]
    (route,) = rule["http"]["paths"]
    assert route["path"] == "/api/sse-canary" and route["pathType"] == "Prefix"
    backend = route["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_canarys_rendered_command_line_serves_healthy_and_streams():
    """The container's command line (the image's ENTRYPOINT `sse-monitor`, i.e. monitor.cli:main, and the rendered
    args), run here with only --listen moved to a free loopback port: it answers /-/healthy as the probes ask, streams
    under the Ingress' path, and stops on SIGTERM as the kubelet stops it."""
    import signal
    import tomllib
    import urllib.request

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(dockerfile_instruction("ENTRYPOINT")) == ["sse-monitor"]
    assert scripts["sse-monitor"] == "monitor.cli:main"
    objects = render_canary()
    pod, c = one(objects, "Deployment")["spec"]["template"]["spec"], canary_container(objects)
    args = list(c["args"])
    args[args.index("--listen") + 1] = "127.0.0.1:0"
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"sse-monitor canary listening on (http://127\.0\.0\.1:[1-9]\d*)\n", line)
        assert match, f"unexpected first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        base = match.group(1)
        for probe in ("livenessProbe", "readinessProbe"):
            with urllib.request.urlopen(base + c[probe]["httpGet"]["path"], timeout=5) as response:
                assert (response.status, response.read()) == (200, b"ok")
        with urllib.request.urlopen(base + "/api/sse-canary?events=2&interval=0", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            body = response.read().decode()
        assert body.startswith("event: canary\n") and "id: 2\n" in body
        assert re.search(r'event: done\ndata: \{"seq":2,"t":[0-9.]+\}\n\n\Z', body), body
        proc.send_signal(signal.SIGTERM)  # the kubelet's stop, within the pod's grace period
        assert proc.wait(timeout=pod["terminationGracePeriodSeconds"]) == 0
    finally:
        proc.kill()
        proc.wait()
