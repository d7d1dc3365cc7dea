"""The serving chart's model lifecycle parts offline: the canary beside the stable pods (Gateway API
or NGINX Ingress routing), the feedback volume and the Grafana dashboard."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.render import SERVING_CHART as CHART
from tests.deploy.render import render
from tests.deploy.test_chart import IMAGE, KUBE_VERSIONS, env_of, one, pod_spec, selects

# The selectors every installed release has: a Deployment's selector is immutable, so a change
# here fails `helm upgrade` of those releases.
STABLE_SELECTOR = {
    "app.kubernetes.io/name": "recsys",
    "app.kubernetes.io/instance": "recsys",
    "app.kubernetes.io/component": "server",
}
ROUTE = {"enabled": True, "parentRefs": [{"name": "web", "namespace": "gateway-system"}]}
CANARY = {"enabled": True, "model": "recsys:new", "image": {"tag": "0.2.0"}, "weight": 10}
GATEWAY = {
    **IMAGE,
    "httpRoute": {**ROUTE, "hostnames": ["recsys.example.com"]},
    "canary": {**CANARY, "routing": "gatewayapi"},
    "serviceMonitor": {"enabled": True},
}
INGRESS = {
    "enabled": True,
    "className": "nginx",
    "tls": [{"secretName": "recsys-tls", "hosts": ["recsys.example.com"]}],
    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
    "hosts": [
        {"host": "recsys.example.com", "paths": [{"path": "/"}]},
        {"host": "api.example.com", "paths": [{"path": "/recommend", "pathType": "Exact"}]},
    ],
}
NGINX = {**IMAGE, "ingress": INGRESS, "canary": {**CANARY, "routing": "nginx"}}
DASHBOARD = CHART / "dashboards" / "recsys.json"


@pytest.fixture(scope="module")
def gateway() -> list[dict]:
    return render(GATEWAY)


@pytest.fixture(scope="module")
def nginx() -> list[dict]:
    return render(NGINX)


def named(objects: list[dict], kind: str, name: str) -> dict[str, Any]:
    (obj,) = (o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    return obj


def pod_labels(deployment: dict) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", [GATEWAY, NGINX], ids=["gatewayapi", "nginx"])
def test_lint_strict(values, version):
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{version}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("routing", ["gateway", "nginx"])
def test_objects_valid_for_kubernetes(request, routing, version):
    for obj in request.getfixturevalue(routing):
        # CRDs: test_http_route checks the HTTPRoute, test_chart.py the ServiceMonitor.
        if obj["kind"] not in ("HTTPRoute", "ServiceMonitor"):
            assert kubernetes_validate.validate(obj, version, strict=True) == version[:4]


def test_canary_off_renders_no_canary_objects():
    for values in (IMAGE, {**IMAGE, "httpRoute": ROUTE, "ingress": INGRESS}):
        objects = render({**values, "canary": {**CANARY, "enabled": False}})
        assert not [o for o in objects if "canary" in o["metadata"]["name"]]
        assert not [o for o in objects if "canary" in json.dumps(o["metadata"])]
    # The route stays, the whole weight on the stable Service.
    (rule,) = one(objects, "HTTPRoute")["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "recsys", "port": 3000, "weight": 100}]


@pytest.mark.parametrize("fixture", ["gateway", "nginx"])
def test_stable_selectors_unchanged(request, fixture):
    """Turning the canary on keeps the stable Deployment's and Service's selectors as every
    installed release has them; canary pods match only their own, stable pods only theirs."""
    objects = request.getfixturevalue(fixture)
    off = render(IMAGE)
    stable, canary = (
        named(objects, "Deployment", "recsys"),
        named(objects, "Deployment", "recsys-canary"),
    )
    for rendered in (objects, off):
        assert named(rendered, "Deployment", "recsys")["spec"]["selector"] == {
            "matchLabels": STABLE_SELECTOR
        }
        assert named(rendered, "Service", "recsys")["spec"]["selector"] == STABLE_SELECTOR
    assert pod_labels(stable)["recsys.io/track"] == "stable"
    assert pod_labels(canary)["recsys.io/track"] == "canary"
    stable_service = {"matchLabels": named(objects, "Service", "recsys")["spec"]["selector"]}
    canary_service = {"matchLabels": named(objects, "Service", "recsys-canary")["spec"]["selector"]}
    assert canary["spec"]["selector"] == canary_service
    assert selects(stable_service, pod_labels(stable))
    assert not selects(stable_service, pod_labels(canary))
    assert selects(canary_service, pod_labels(canary))
    assert not selects(canary_service, pod_labels(stable))
    assert not selects(stable["spec"]["selector"], pod_labels(canary))


def test_canary_deployment(gateway):
    stable, canary = (
        named(gateway, "Deployment", "recsys"),
        named(gateway, "Deployment", "recsys-canary"),
    )
    (stable_container,) = pod_spec(stable)["containers"]
    (container,) = pod_spec(canary)["containers"]
    assert container["image"] == "registry.example.com/recsys:0.2.0"  # repository: the stable's
    assert env_of(container)["RECSYS_MODEL"]["value"] == "recsys:new"
    assert canary["spec"]["replicas"] == 1  # no autoscaler
    assert "replicas" not in stable["spec"]  # the HPA's, which targets the stable one only
    assert one(gateway, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == "recsys"
    # Everything but the image and the model as the stable pods have it.
    same = ("resources", "securityContext", "volumeMounts", "ports")
    same += ("startupProbe", "readinessProbe", "livenessProbe")
    assert {key: container[key] for key in same} == {key: stable_container[key] for key in same}
    spec, stable_spec = pod_spec(canary), pod_spec(stable)
    for key in (
        "securityContext",
        "volumes",
        "terminationGracePeriodSeconds",
        "serviceAccountName",
    ):
        assert spec[key] == stable_spec[key], key
    assert spec["automountServiceAccountToken"] is False
    stable_env = {k: v for k, v in env_of(stable_container).items() if k != "RECSYS_MODEL"}
    assert {k: v for k, v in env_of(container).items() if k != "RECSYS_MODEL"} == stable_env
    service = named(gateway, "Service", "recsys-canary")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == named(gateway, "Service", "recsys")["spec"]["ports"]


def test_canary_options():
    values = {
        **GATEWAY,
        "extraEnv": [{"name": "A", "value": "stable"}, {"name": "B", "value": "both"}],
        "canary": {
            **GATEWAY["canary"],
            "image": {"repository": "registry.example.com/challenger", "tag": 7},
            "model": "",
            "replicaCount": 3,
            "resources": {"requests": {"cpu": "500m"}},
            "extraEnv": [{"name": "A", "value": "canary"}, {"name": "C", "value": "canary"}],
        },
    }
    objects = render(values)
    canary = named(objects, "Deployment", "recsys-canary")
    (container,) = pod_spec(canary)["containers"]
    assert container["image"] == "registry.example.com/challenger:7"
    assert canary["spec"]["replicas"] == 3
    assert container["resources"] == {"requests": {"cpu": "500m"}}
    env = [(v["name"], v.get("value")) for v in container["env"]]
    assert "RECSYS_MODEL" not in dict(env)  # the newest model bundled in the canary's image
    # The canary's value wins, and every name is listed once.
    assert [e for e in env if e[0] in "ABC"] == [("B", "both"), ("A", "canary"), ("C", "canary")]
    (stable,) = pod_spec(named(objects, "Deployment", "recsys"))["containers"]
    assert [(v["name"], v["value"]) for v in stable["env"] if v["name"] in "ABC"] == [
        ("A", "stable"),
        ("B", "both"),
    ]


# Gateway API HTTPRoute v1 (standard channel), the fields the chart renders: neither
# kubernetes-validate nor any installed package ships the CRD's schema, so its constraints on
# those fields are written out here.
NAME = {"type": "string", "minLength": 1, "maxLength": 253}
LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
HTTP_ROUTE_V1 = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "parentRefs": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "group": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": NAME,
                            "namespace": {
                                "type": "string",
                                "pattern": f"^{LABEL}$",
                            },
                            "sectionName": NAME,
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        },
                    },
                },
                "hostnames": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                        "type": "string",
                        "pattern": rf"^(\*\.)?{LABEL}(\.{LABEL})*$",
                    },
                },
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "backendRefs": {
                                "type": "array",
                                "maxItems": 16,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    # A Service backend needs its port (a CEL rule of the CRD).
                                    "required": ["name", "port"],
                                    "properties": {
                                        "name": NAME,
                                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                        "weight": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": 1000000,
                                        },
                                    },
                                },
                            }
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize(("weight", "expected"), [(0, [100, 0]), (10, [90, 10]), (100, [0, 100])])
def test_http_route(weight, expected):
    objects = render({**GATEWAY, "canary": {**GATEWAY["canary"], "weight": weight}})
    route = one(objects, "HTTPRoute")
    jsonschema.validate(route, HTTP_ROUTE_V1)
    assert route["spec"]["parentRefs"] == ROUTE["parentRefs"]
    assert route["spec"]["hostnames"] == ["recsys.example.com"]
    (rule,) = route["spec"]["rules"]
    backends = rule["backendRefs"]
    assert [b["weight"] for b in backends] == expected
    # Each backend is a rendered Service, on its port, selecting the track it stands for.
    for backend, component in zip(backends, ["server", "server-canary"], strict=True):
        service = named(objects, "Service", backend["name"])
        assert backend["port"] in [p["port"] for p in service["spec"]["ports"]]
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component


@pytest.mark.parametrize("weight", [0, 35, 100])
def test_nginx_canary_ingress(weight):
    objects = render({**NGINX, "canary": {**NGINX["canary"], "weight": weight}})
    assert not [o for o in objects if o["kind"] == "HTTPRoute"]
    main, canary = named(objects, "Ingress", "recsys"), named(objects, "Ingress", "recsys-canary")
    assert "nginx.ingress.kubernetes.io/canary" not in main["metadata"]["annotations"]
    # Only the canary annotations: TLS and the rest come from the main Ingress (a copied
    # cert-manager annotation would issue a second certificate into the same Secret).
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": str(weight),
    }
    assert "tls" not in canary["spec"]
    assert canary["spec"]["ingressClassName"] == main["spec"]["ingressClassName"] == "nginx"

    def routes(ingress: dict) -> list[tuple]:
        return [
            (rule["host"], path["path"], path["pathType"], path["backend"]["service"]["name"])
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        ]

    assert [r[:3] for r in routes(canary)] == [r[:3] for r in routes(main)]
    assert {r[3] for r in routes(main)} == {"recsys"}
    assert {r[3] for r in routes(canary)} == {"recsys-canary"}


@pytest.mark.parametrize("fixture", ["gateway", "nginx"])
def test_policy_monitor_and_budget_cover_the_canary(request, fixture):
    objects = request.getfixturevalue(fixture)
    stable, canary = (
        pod_labels(named(objects, "Deployment", name)) for name in ("recsys", "recsys-canary")
    )
    test_pod = one(objects, "Pod")["metadata"]["labels"]
    policy = one(objects, "NetworkPolicy")["spec"]["podSelector"]
    assert selects(policy, stable) and selects(policy, canary) and not selects(policy, test_pod)
    budgets = {
        o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"
    }
    assert selects(budgets["recsys"]["selector"], stable)
    assert not selects(budgets["recsys"]["selector"], canary)
    assert selects(budgets["recsys-canary"]["selector"], canary)
    assert not selects(budgets["recsys-canary"]["selector"], stable)
    assert budgets["recsys-canary"]["maxUnavailable"] == 1
    if fixture == "gateway":
        monitor = one(objects, "ServiceMonitor")["spec"]["selector"]
        services = [o["metadata"]["labels"] for o in objects if o["kind"] == "Service"]
        assert len(services) == 2 and all(selects(monitor, labels) for labels in services)
    off = render({**GATEWAY, "podDisruptionBudget": {"enabled": False}})
    assert not [o for o in off if o["kind"] == "PodDisruptionBudget"]


def feedback_volume(objects: list[dict]) -> list[dict]:
    volumes = []
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        (mount,) = (m for m in container["volumeMounts"] if m["name"] == "feedback")
        assert mount["mountPath"] == env_of(container)["RECSYS_FEEDBACK_DIR"]["value"]
        volumes.append(next(v for v in spec["volumes"] if v["name"] == "feedback"))
    return volumes


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_feedback_volume(version):
    # Default: an emptyDir in each pod, stable and canary.
    assert feedback_volume(render(GATEWAY)) == [{"name": "feedback", "emptyDir": {}}] * 2
    # A chart-made claim shared by both Deployments, kept on uninstall.
    persistence = {"enabled": True, "storageClass": "efs", "size": "50Gi"}
    values = {
        **GATEWAY,
        "feedback": {"dir": "/data/feedback", "maxBytes": 67108864, "persistence": persistence},
    }
    objects = render(values)
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "recsys-feedback"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "efs",
        "resources": {"requests": {"storage": "50Gi"}},
    }
    volume = {"name": "feedback", "persistentVolumeClaim": {"claimName": "recsys-feedback"}}
    assert feedback_volume(objects) == [volume] * 2
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        env = env_of(pod_spec(deployment)["containers"][0])
        assert env["RECSYS_FEEDBACK_MAX_BYTES"]["value"] == "67108864"  # not 6.7108864e+07
        assert env["RECSYS_FEEDBACK_DIR"]["value"] == "/data/feedback"
    for obj in objects:
        if obj["kind"] in ("Deployment", "PersistentVolumeClaim"):
            kubernetes_validate.validate(obj, version, strict=True)
    # A claim of yours: used as is, none created.
    existing = render(
        {**IMAGE, "feedback": {"persistence": {"enabled": True, "existingClaim": "events"}}}
    )
    assert not [o for o in existing if o["kind"] == "PersistentVolumeClaim"]
    assert feedback_volume(existing) == [
        {"name": "feedback", "persistentVolumeClaim": {"claimName": "events"}}
    ]


@pytest.mark.parametrize(
    "directory", ["/", "/home/bentoml", "/home/bentoml/bento/models", "/tmp/", "/var/lib/bentoml"]
)
def test_feedback_dir_must_not_hide_the_bento_or_a_volume(directory):
    with pytest.raises(
        helm.HelmRenderError, match=f"feedback.dir={re.escape(directory)} would hide"
    ):
        render({**IMAGE, "feedback": {"dir": directory}})


@pytest.mark.parametrize(
    ("values", "named_in_error"),
    [
        ({"canary": {"weight": 101}}, "/canary/weight"),
        ({"canary": {"weight": -1}}, "/canary/weight"),
        ({"canary": {"weight": "10%"}}, "/canary/weight"),
        ({"canary": {"routing": "istio"}}, "/canary/routing"),
        ({"canary": {"replicas": 2}}, "'replicas'"),
        ({"httpRoute": {"parentRefs": [{"namespace": "gw"}]}}, "/httpRoute/parentRefs/0"),
        ({"httpRoute": {"hostnames": ["10.0.0.1:80"]}}, "/httpRoute/hostnames/0"),
        ({"feedback": {"dir": "feedback"}}, "/feedback/dir"),
        ({"feedback": {"maxBytes": 0}}, "/feedback/maxBytes"),
        (
            {"feedback": {"persistence": {"accessModes": ["ReadWriteAll"]}}},
            "/feedback/persistence/accessModes/0",
        ),
        ({"terminationGracePeriodSeconds": -1}, "/terminationGracePeriodSeconds"),
        ({"grafana": {"dashboard": {"label": "grafana dashboard"}}}, "/grafana/dashboard/label"),
    ],
)
def test_bad_values_refused(values, named_in_error):
    with pytest.raises(helm.HelmValuesError, match="schema") as refused:
        render({**IMAGE, **values})
    assert named_in_error in str(refused.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"canary": {**CANARY, "routing": "nginx"}},
            "canary.routing=nginx adds an NGINX canary Ingress beside the chart's Ingress",
        ),
        (
            {"canary": {**CANARY, "routing": "gatewayapi"}},
            "canary.routing=gatewayapi splits the traffic of the chart's HTTPRoute: set httpRoute",
        ),
        ({"httpRoute": {"enabled": True}}, "httpRoute.enabled needs httpRoute.parentRefs"),
    ],
    ids=["nginx-without-ingress", "gatewayapi-without-route", "route-without-gateway"],
)
def test_inconsistent_values_fail_clearly(values, message):
    with pytest.raises(helm.HelmRenderError) as failed:
        render({**IMAGE, **values})
    assert message in str(failed.value)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_dashboard_configmap(version):
    dashboard = {
        "enabled": True,
        "namespace": "monitoring",
        "label": "example.com/dashboard",
        "labelValue": "yes",
    }
    config_map = one(render({**IMAGE, "grafana": {"dashboard": dashboard}}), "ConfigMap")
    assert kubernetes_validate.validate(config_map, version, strict=True) == version[:4]
    assert config_map["metadata"]["name"] == "recsys-dashboard"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["example.com/dashboard"] == "yes"
    # As the file is: never templated (its legends use Grafana's {{label}}).
    assert config_map["data"] == {"recsys.json": DASHBOARD.read_text()}
    sidecar = one(render({**IMAGE, "grafana": {"dashboard": {"enabled": True}}}), "ConfigMap")
    assert sidecar["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "namespace" not in sidecar["metadata"]  # the release's
    assert not [o for o in render(IMAGE) if o["kind"] == "ConfigMap"]


# The series the service exposes, with their labels (BentoML's request metrics under its default
# namespace `bentoml_service`), and the labels the Prometheus Operator adds to every target.
SERIES = {
    "recsys_model_info": {"model", "model_version"},
    "recsys_recommendations_total": {"endpoint", "model_version", "fallback"},
    "recsys_feedback_events_total": {"type", "model_version"},
    "bentoml_service_request_total": {
        "endpoint",
        "service_name",
        "service_version",
        "http_response_code",
        "runner_name",
    },
    "bentoml_service_request_duration_seconds_bucket": {
        "endpoint",
        "service_name",
        "service_version",
        "http_response_code",
        "runner_name",
        "le",
    },
}
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "container"}
LABEL_VALUES = {"type": {"impression", "click", "purchase"}, "fallback": {"popular", "none"}}
FUNCTIONS = {"sum", "count", "max", "rate", "histogram_quantile"}
LABEL_VALUES_QUERY = re.compile(r"^label_values\((.*),\s*(\w+)\)$")
SELECTOR = re.compile(r"\b([a-zA-Z_:][\w:]*)\s*(?:\{([^}]*)\})?(?!\s*\()")
MATCHER = re.compile(r'\s*(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"\s*(?:,|$)')


def check_promql(expr: str) -> set[str]:
    """The metrics an expression reads, after checking that it reads only the service's series,
    filters and groups them by their own labels, and calls known functions.

    Hand-written: no PromQL parser is among the project's dependencies, and the dashboard uses a
    small part of the language (selectors, sum/count/max by, rate, ratios, histogram_quantile,
    and Grafana's label_values for its variables)."""
    if variable := LABEL_VALUES_QUERY.match(expr):
        metrics = check_promql(variable[1])
        assert variable[2] in set().union(*(SERIES[m] for m in metrics), TARGET_LABELS), expr
        return metrics
    body = re.sub(r"\[[^\]]*\]", "", expr)  # range windows: [5m], [$__rate_interval]
    groups = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", body)
    body = re.sub(r"\b(?:by|without)\s*\([^)]*\)", "", body)
    for called in re.findall(r"\b([a-zA-Z_]\w*)\s*\(", body):
        assert called in FUNCTIONS, f"unknown function {called!r} in {expr}"
    metrics: set[str] = set()
    for name, matchers in SELECTOR.findall(re.sub(r"\b[a-zA-Z_]\w*\s*\(", "(", body)):
        assert name in SERIES, f"unknown metric {name!r} in {expr}"
        metrics.add(name)
        assert not MATCHER.sub("", matchers).strip(), f"bad matchers {matchers!r} in {expr}"
        for label, value in MATCHER.findall(matchers):
            assert label in SERIES[name] | TARGET_LABELS, f"{name} has no label {label!r}"
            assert value in LABEL_VALUES.get(label, {value}), f"{label}={value!r} in {expr}"
    own = set().union(*(SERIES[m] for m in metrics), TARGET_LABELS)
    for group in groups:
        labels = {label.strip() for label in group.split(",")}
        assert labels <= own, f"grouped by {labels - own} in {expr}"
    return metrics


def test_dashboard_queries_read_only_the_service_series():
    dashboard = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in dashboard["templating"]["list"]} == {
        "datasource",
        "namespace",
        "service",
    }
    for variable in dashboard["templating"]["list"][1:]:
        assert check_promql(variable["query"]["query"]) == {"recsys_model_info"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    read = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            metrics = check_promql(target["expr"])
            assert metrics, panel["title"]
            read |= metrics
            # Legends name labels the query keeps.
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            groups = re.findall(r"by \(([^)]*)\)", target["expr"])
            kept = {label.strip() for group in groups for label in group.split(",")}
            assert legend <= kept, panel["title"]
    assert read == set(SERIES)
    ctr = next(p for p in panels if p["title"].startswith("Click-through rate"))
    where = 'namespace="$namespace", service=~"$service"'
    assert ctr["targets"][0]["expr"] == (
        f'sum by (model_version) (rate(recsys_feedback_events_total{{type="click", {where}}}[5m]))'
        " / sum by (model_version)"
        f' (rate(recsys_feedback_events_total{{type="impression", {where}}}[5m]))'
    )


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(http_requests_total[5m]))",
        'recsys_feedback_events_total{kind="click"}',
        'recsys_feedback_events_total{type="view"}',
        "sum by (pid) (recsys_model_info)",
        "avg_over_time(recsys_model_info[5m])",
    ],
)
def test_the_query_check_can_fail(expr):
    with pytest.raises(AssertionError):
        check_promql(expr)


def test_install_notes():
    values = {**NGINX, "grafana": {"dashboard": {"enabled": True}}}
    with helm.Config(storage_driver="memory", namespace="recsys") as config:
        notes = config.install(CHART, "recsys", values, dry_run="client")["notes"]
        off = config.install(CHART, "recsys", IMAGE, dry_run="client")["notes"]
    assert "gets 10% of the traffic" in notes
    assert "--set-string image.tag=0.2.0 --set model=recsys:new --set canary.enabled=false" in notes
    assert "ConfigMap recsys-dashboard" in notes
    assert "--set canary.enabled=true --set canary.model=recsys:NEW" in off
    assert "emptyDir: lost with each pod" in off
