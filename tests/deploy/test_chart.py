"""The serving chart deploy/helm/recsys offline: lint, values schema, and the rendered objects
checked against Kubernetes' own (strict) schemas and the chart's promises."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.deploy.render import SERVING_CHART as CHART
from tests.deploy.render import TRAINING_CHART, render

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a recent one.
KUBE_VERSIONS = ["1.29.0", "1.33.0"]
IMAGE = {"image": {"repository": "registry.example.com/recsys", "tag": "0.1.0"}}
FULL = {
    **IMAGE,
    "gpu": 1,
    "ingress": {"enabled": True, "className": "nginx", "tls": [{"secretName": "recsys-tls"}]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]},
}
SERVING_KINDS = {
    "Deployment",
    "Service",
    "ServiceAccount",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Pod",  # the `helm test` hook
}
BENTO_PATH = "/home/bentoml/bento"  # where `bentoml containerize` puts the Bento and its models


def one(objects: list[dict], kind: str, component: str | None = None) -> dict[str, Any]:
    matches = [
        obj
        for obj in objects
        if obj["kind"] == kind
        and component in (None, obj["metadata"]["labels"].get("app.kubernetes.io/component"))
    ]
    assert len(matches) == 1, f"{len(matches)} {kind} objects"
    return matches[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {var["name"]: var for var in container.get("env", [])}


def selects(selector: dict, labels: dict) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects objects with `labels`;
    a Service's plain selector map is passed as {"matchLabels": ...}."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise AssertionError(f"an empty selector selects everything: {selector}")
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    tests = {
        "In": lambda key, values: labels.get(key) in values,
        "NotIn": lambda key, values: labels.get(key) not in values,
        "Exists": lambda key, values: key in labels,
        "DoesNotExist": lambda key, values: key not in labels,
    }
    return all(
        tests[e["operator"]](e["key"], e.get("values", []))
        for e in selector.get("matchExpressions", [])
    )


@pytest.fixture(scope="module")
def defaults() -> list[dict]:
    return render(IMAGE)


@pytest.fixture(scope="module")
def full() -> list[dict]:
    return render(FULL)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", [None, IMAGE, FULL], ids=["chart-defaults", "defaults", "full"])
def test_lint_strict(values, version):
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}")
    assert report["errors"] == []
    # Severity 1 is information (e.g. "icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_kinds(defaults, full):
    assert {obj["kind"] for obj in defaults} == SERVING_KINDS
    assert {obj["kind"] for obj in full} == SERVING_KINDS | {"Ingress", "ServiceMonitor"}
    assert [obj["kind"] for obj in full].count("Service") == 1  # training is its own chart
    off = {
        "autoscaling": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "serviceAccount": {"create": False},
    }
    assert {obj["kind"] for obj in render({**IMAGE, **off})} == {"Deployment", "Service", "Pod"}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("which", ["defaults", "full"])
def test_objects_valid_for_kubernetes(request, which, version):
    objects = request.getfixturevalue(which)
    for obj in objects:
        # A CRD of the Prometheus Operator: kubernetes-validate ships only built-in kinds;
        # test_service_monitor checks its structure.
        if obj["kind"] == "ServiceMonitor":
            continue
        # It returns the schema version used: the one asked for, not an older fallback.
        assert kubernetes_validate.validate(obj, version, strict=True) == version[:4]


def test_service_monitor(full):
    monitor = one(full, "ServiceMonitor")
    service = one(full, "Service", "server")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "30s"
    # The series keep the service's `endpoint` label (the API path), not exported_endpoint.
    assert endpoint["honorLabels"] is True


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
# OpenShift's restricted-v2 SCC assigns the uid and fsGroup itself (docs/CHART.md).
OPENSHIFT = ",".join(
    f"podSecurityContext.{key}=null" for key in ("runAsUser", "runAsGroup", "fsGroup")
)


@pytest.mark.parametrize(
    ("kind", "component", "uid"), [("Deployment", "server", 1034), ("Pod", "test", 65534)]
)
def test_restricted_security(full, kind, component, uid):
    spec = pod_spec(one(full, kind, component))
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        assert container["securityContext"] == RESTRICTED_CONTAINER


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_openshift_drops_the_fixed_ids(version):
    """`--set ...=null` deletes the defaults' keys: no uid, gid or fsGroup for the SCC to refuse,
    on the serving pods and on the `helm test` pod alike; the rest stays restricted."""
    objects = render({**IMAGE, **helm.parse_set_string(OPENSHIFT)})
    for kind in ("Deployment", "Pod"):
        obj = one(objects, kind)
        spec = pod_spec(obj)
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert spec["containers"][0]["securityContext"] == RESTRICTED_CONTAINER
        kubernetes_validate.validate(obj, version, strict=True)
    report = helm.lint(CHART, {**IMAGE, **helm.parse_set_string(OPENSHIFT)}, strict=True)
    assert report["errors"] == []


def test_security_contexts_are_values():
    values = {
        **IMAGE,
        "podSecurityContext": {"runAsUser": 2000, "supplementalGroups": [3000]},
        "securityContext": {"readOnlyRootFilesystem": False},
    }
    objects = render(values)
    spec = pod_spec(one(objects, "Deployment"))
    assert spec["securityContext"]["runAsUser"] == 2000  # merged into the defaults
    assert spec["securityContext"]["fsGroup"] == 1034
    assert spec["securityContext"]["supplementalGroups"] == [3000]
    assert spec["containers"][0]["securityContext"] == {
        **RESTRICTED_CONTAINER,
        "readOnlyRootFilesystem": False,
    }
    assert pod_spec(one(objects, "Pod"))["securityContext"]["runAsUser"] == 65534
    # null drops a whole context.
    bare = render({**IMAGE, "podSecurityContext": None, "securityContext": None})
    for obj in bare:
        if obj["kind"] in ("Deployment", "Pod"):
            spec = pod_spec(obj)
            assert "securityContext" not in spec
            assert "securityContext" not in spec["containers"][0]


def test_service_account_token_not_mounted(defaults):
    assert one(defaults, "ServiceAccount")["automountServiceAccountToken"] is False


def test_serving_container(defaults):
    deployment = one(defaults, "Deployment")
    (container,) = pod_spec(deployment)["containers"]
    assert container["image"] == "registry.example.com/recsys:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "readiness", "liveness")
    }
    assert probes == {
        "startup": {"path": "/readyz", "port": "http"},
        "readiness": {"path": "/readyz", "port": "http"},
        "liveness": {"path": "/livez", "port": "http"},
    }
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # model load
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    env = env_of(container)
    assert env["OMP_WAIT_POLICY"]["value"] == "PASSIVE"
    assert "RECSYS_MODEL" not in env and "RECSYS_TORCH_THREADS" not in env
    assert "RECSYS_DEVICE" not in env  # CPU unless GPUs are requested
    assert env["RECSYS_FEEDBACK_DIR"]["value"] == "/var/lib/recsys/feedback"
    assert "RECSYS_FEEDBACK_MAX_BYTES" not in env  # the service's default
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 30
    assert deployment["spec"]["template"]["metadata"]["labels"]["recsys.io/track"] == "stable"
    # HPA on: it owns the replica count.
    assert "replicas" not in deployment["spec"]


def test_serving_volumes_keep_the_bento_visible(defaults):
    spec = pod_spec(one(defaults, "Deployment"))
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    home = env_of(container)["BENTOML_HOME"]["value"]
    feedback = env_of(container)["RECSYS_FEEDBACK_DIR"]["value"]
    assert set(mounts) == {"/tmp", home, feedback}
    # Without persistence, the feedback log too is an emptyDir.
    assert all(volumes[name]["emptyDir"] == {} for name in mounts.values())
    # No writable volume over the Bento (and its models) or any directory above it.
    for path in mounts:
        assert not f"{BENTO_PATH}/".startswith(f"{path.rstrip('/')}/"), path


def test_serving_options():
    spread = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone"}
    values = {
        **IMAGE,
        "gpu": 2,
        "model": "recsys:abc123",
        "torchThreads": 4,
        "extraEnv": [{"name": "BENTOML_API_WORKERS", "value": "2"}],
        "autoscaling": {"enabled": False},
        "replicaCount": 3,
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"a": "b"},
        "podLabels": {"team": "recs"},
        "imagePullSecrets": [{"name": "regcred"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "topologySpreadConstraints": [{**spread, "whenUnsatisfiable": "ScheduleAnyway"}],
    }
    objects = render(values)
    for obj in objects:
        kubernetes_validate.validate(obj, KUBE_VERSIONS[0], strict=True)
    deployment = one(objects, "Deployment")
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert env_of(container)["RECSYS_DEVICE"]["value"] == "cuda"
    env = env_of(container)
    assert env["RECSYS_MODEL"]["value"] == "recsys:abc123"
    assert env["RECSYS_TORCH_THREADS"]["value"] == "4"
    assert env["BENTOML_API_WORKERS"]["value"] == "2"
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "recs"
    assert spec["affinity"] == values["affinity"]
    assert spec["topologySpreadConstraints"] == values["topologySpreadConstraints"]


def test_service_hpa_pdb(defaults):
    service = one(defaults, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 3000, "http")
    hpa = one(defaults, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(defaults, "Deployment")["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    pdb = one(defaults, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    # maxUnavailable, never minAvailable == replicas: such a budget blocks node drains.
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    custom = one(
        render({**IMAGE, "podDisruptionBudget": {"minAvailable": "50%"}}), "PodDisruptionBudget"
    )
    assert custom["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in custom["spec"]


def test_selectors_take_the_serving_pods_only(full):
    """The Service, PDB and NetworkPolicy select the serving pods, neither the `helm test` pod nor
    the training pods of a recsys-training release of the same name."""
    serving = one(full, "Deployment")["spec"]["template"]["metadata"]["labels"]
    test_pod = one(full, "Pod")["metadata"]["labels"]
    training_values = {
        "training": {
            "image": {"repository": "registry.example.com/trainer"},
            "data": {"existingClaim": "recsys-data"},
        }
    }
    job = one(render(training_values, chart=TRAINING_CHART), "Job")
    training = job["spec"]["template"]["metadata"]["labels"]
    for obj, selector in [
        (one(full, "Service", "server"), lambda o: {"matchLabels": o["spec"]["selector"]}),
        (one(full, "PodDisruptionBudget"), lambda o: o["spec"]["selector"]),
        (one(full, "NetworkPolicy"), lambda o: o["spec"]["podSelector"]),
    ]:
        assert selects(selector(obj), serving), obj["kind"]
        assert not selects(selector(obj), training), obj["kind"]
        assert not selects(selector(obj), test_pod), obj["kind"]


def test_network_policy(defaults, full):
    policy = one(defaults, "NetworkPolicy")
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress == {"ports": [{"port": "http", "protocol": "TCP"}]}  # from anywhere
    (dns,) = policy["spec"]["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    # Restricted sources: the `helm test` pod is let in too.
    peers = one(full, "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert peers[0] == {"namespaceSelector": {"matchLabels": {"team": "web"}}}
    test_pod_labels = one(full, "Pod")["metadata"]["labels"].items()
    assert peers[1]["podSelector"]["matchLabels"].items() <= test_pod_labels


def test_ingress(full):
    ingress = one(full, "Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "recsys", "port": {"name": "http"}}


def test_helm_test_hook(defaults):
    pod = one(defaults, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["command"][-1] == "http://recsys:3000/readyz"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_an_all_digit_tag_set_as_a_number_is_used_as_is():
    """`--set image.tag=123` arrives as an integer: the schema takes it, the image keeps it."""
    objects = render({"image": {"repository": "registry.example.com/recsys", "tag": 123}})
    (container,) = pod_spec(one(objects, "Deployment"))["containers"]
    assert container["image"] == "registry.example.com/recsys:123"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicaCount": "3"}, "/replicaCount"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"replicas": 2}, "'replicas'"),
        ({"image": {"repository": "r", "digest": "sha256:0"}}, "'digest'"),
        ({"service": {"port": 70000}}, "/service/port"),
        ({"podSecurityContext": {"runAsUser": -1}}, "/podSecurityContext/runAsUser"),
        ({"podSecurityContext": {"runAsUsr": 1}}, "'runAsUsr'"),
        ({"securityContext": {"capabilities": {"drop": "ALL"}}}, "/securityContext/capabilities"),
        ({"podSecurityContext": {"seccompProfile": {"type": "Default"}}}, "seccompProfile"),
        ({"resources": {"limits": {"memory": "2GB"}}}, "/resources/limits/memory"),
        (
            {"podDisruptionBudget": {"maxUnavailable": "half"}},
            "/podDisruptionBudget/maxUnavailable",
        ),
        ({"torchThreads": "four"}, "/torchThreads"),
    ],
)
def test_bad_values_refused(values, named):
    with pytest.raises(helm.HelmValuesError, match="schema") as refused:
        render({**IMAGE, **values})
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"training": {"enabled": True}},
            "training moved to its own chart, deploy/helm/recsys-training",
        ),
        (
            {"training": {"enabled": False}},
            "training moved to its own chart, deploy/helm/recsys-training",
        ),
        (
            {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}},
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        ),
        (
            {"resources": {"requests": {"cpu": None}}},
            "autoscaling.enabled needs resources.requests.cpu",
        ),
        (
            {"podDisruptionBudget": {"maxUnavailable": ""}},
            "podDisruptionBudget needs maxUnavailable or minAvailable",
        ),
    ],
    ids=[
        "training-enabled",
        "training-disabled",
        "min-over-max",
        "hpa-without-cpu-request",
        "empty-pdb",
    ],
)
def test_inconsistent_values_fail_clearly(values, message):
    with pytest.raises(helm.HelmRenderError) as failed:
        render({**IMAGE, **values})
    assert message in str(failed.value)


def test_install_dry_run():
    with helm.Config(storage_driver="memory", namespace="recsys") as config:
        release = config.install(CHART, "recsys", IMAGE, dry_run="client")
    assert release["status"] == "pending-install"
    assert "kind: Deployment" in release["manifest"]
    assert "port-forward svc/recsys" in release["notes"]
