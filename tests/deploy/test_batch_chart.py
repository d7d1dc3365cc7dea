"""The batch scoring chart deploy/helm/recsys-batch offline: lint, values schema, the Job and the
CronJob checked against Kubernetes' own (strict) schemas, and recsys-recommend's arguments read
back the way the kubelet and Hydra read them."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.deploy.render import BATCH_CHART as CHART
from tests.deploy.render import render as render_chart

KUBE_VERSIONS = ["1.29.0", "1.33.0"]
SCHEDULE = "0 3 * * *"
BATCH = {
    "image": {"repository": "registry.example.com/recsys-train", "tag": "0.1.0"},
    "model": "models:/recsys@champion",
    "mlflowTrackingUri": "http://mlflow:5000",
    "data": {"existingClaim": "recsys-data"},
}
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1034,
    "runAsGroup": 1034,
    "fsGroup": 1034,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
JOB_NAME_FIELD = "metadata.labels['batch.kubernetes.io/job-name']"


def values(**batch: Any) -> dict[str, Any]:
    return {"batch": {**BATCH, **batch}}


def render(chart_values: dict[str, Any] | None, **options: Any) -> list[dict[str, Any]]:
    return render_chart(chart_values, chart=CHART, release="topk", **options)


def one(objects: list[dict], kind: str) -> dict[str, Any]:
    matches = [obj for obj in objects if obj["kind"] == kind]
    assert len(matches) == 1, f"{len(matches)} {kind} objects"
    return matches[0]


def job_spec(objects: list[dict]) -> dict[str, Any]:
    """The spec of the batch job: the Job's, or the CronJob's jobTemplate's."""
    (obj,) = (o for o in objects if o["kind"] in {"Job", "CronJob"})
    return obj["spec"] if obj["kind"] == "Job" else obj["spec"]["jobTemplate"]["spec"]


def container_of(objects: list[dict]) -> dict[str, Any]:
    (container,) = job_spec(objects)["template"]["spec"]["containers"]
    return container


def env_of(container: dict) -> dict[str, dict]:
    return {var["name"]: var for var in container.get("env", [])}


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """What the kubelet makes of a container argument: `$(VAR)` becomes the variable's value
    (left as it is when the container has no such variable), `$$` becomes `$`."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if text[i + 1] == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
            out.append(text[i : i + 2])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def read_args(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings recsys-recommend receives: each argument expanded by the kubelet, parsed
    by Hydra's override grammar, then resolved by OmegaConf (which reads `${...}`)."""
    env = {"JOB_COMPLETION_INDEX": "0", "JOB_NAME": "topk-batch-29000000", **(env or {})}
    parser = OverridesParser.create()
    settings = {}
    for arg in args:
        override = parser.parse_override(kubelet_expand(arg, env))
        settings[override.key_or_group] = override.value()
    return OmegaConf.to_container(OmegaConf.create(settings), resolve=True)


@pytest.fixture(scope="module", params=["job", "cronjob"])
def rendered(request) -> tuple[str, list[dict]]:
    schedule = SCHEDULE if request.param == "cronjob" else ""
    return request.param, render(values(schedule=schedule))


@pytest.mark.parametrize("schedule", ["", SCHEDULE], ids=["job", "cronjob"])
@pytest.mark.parametrize("version", [f"v{v}" for v in KUBE_VERSIONS])
def test_lint_strict(schedule, version):
    report = helm.lint(CHART, values(schedule=schedule), strict=True, kube_version=version)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_chart_defaults():
    """A platform's CI can lint the chart as it is (required values only warn in lint mode)."""
    report = helm.lint(CHART, None, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_kinds(rendered):
    mode, objects = rendered
    kind = {"job": "Job", "cronjob": "CronJob"}[mode]
    assert sorted(obj["kind"] for obj in objects) == sorted(["ServiceAccount", kind])
    without_account = render({**values(), "serviceAccount": {"create": False}})
    assert [obj["kind"] for obj in without_account] == ["Job"]
    assert job_spec(without_account)["template"]["spec"]["serviceAccountName"] == "default"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_objects_valid_for_kubernetes(rendered, version):
    _, objects = rendered
    for obj in objects:
        assert kubernetes_validate.validate(obj, version, strict=True) == version[:4]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_option_valid_for_kubernetes(version):
    everything = values(
        shards=5,
        parallelism=3,
        workers=4,
        gpusPerPod=1,
        device="cuda",
        retrieval="ann",
        users="ids/new users.parquet",
        bentomlHome="/data/bentoml",
        extraArgs=["data.processed_dir=/data/processed"],
        extraEnv=[{"name": "AWS_REGION", "value": "eu-west-1"}],
        nodeSelector={"pool": "gpu"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        activeDeadlineSeconds=7200,
        ttlSecondsAfterFinished=86400,
    )
    for schedule in ("", "@daily"):
        chart_values = {**everything, "imagePullSecrets": [{"name": "regcred"}]}
        chart_values["batch"] = {**chart_values["batch"], "schedule": schedule}
        if schedule:
            chart_values["batch"]["timeZone"] = "Europe/Berlin"
        for obj in render(chart_values):
            assert kubernetes_validate.validate(obj, version, strict=True) == version[:4]


def test_job():
    objects = render(values(shards=3))
    job = one(objects, "Job")
    spec = job["spec"]
    assert job["metadata"]["name"] == "topk-batch-1"
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimitPerIndex"] == 2
    assert "backoffLimit" not in spec  # per index only; Kubernetes sets the Job's to the max
    disruption = {"type": "DisruptionTarget", "status": "True"}
    assert spec["podFailurePolicy"] == {
        "rules": [{"action": "Ignore", "onPodConditions": [disruption]}]
    }
    assert "ttlSecondsAfterFinished" not in spec and "activeDeadlineSeconds" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "topk-batch"
    assert pod["enableServiceLinks"] is False
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/recsys-train:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["recsys-recommend"]
    assert container["workingDir"] == "/data"
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    env = env_of(container)
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"] == {"fieldRef": {"fieldPath": INDEX_FIELD}}
    assert "JOB_NAME" not in env
    assert env["OMP_WAIT_POLICY"]["value"] == "PASSIVE"
    assert env["HOME"]["value"] == "/tmp"
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
    assert "BENTOML_HOME" not in env
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/data"]]["persistentVolumeClaim"] == {"claimName": "recsys-data"}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    limited = one(render(values(ttlSecondsAfterFinished=600, activeDeadlineSeconds=3600)), "Job")
    assert limited["spec"]["ttlSecondsAfterFinished"] == 600
    assert limited["spec"]["activeDeadlineSeconds"] == 3600
    upgraded = one(render(values(), revision=4), "Job")
    assert upgraded["metadata"]["name"] == "topk-batch-4"


def test_args():
    container = container_of(render(values()))
    assert container["args"] == [
        "model=models:/recsys@champion",
        "output_dir=/data/topk",
        "users=all",
        "k=10",
        "exclude_seen=true",
        "workers=1",
        "device=auto",
        "retrieval=auto",
        "shard=$(JOB_COMPLETION_INDEX)/2",
    ]
    assert read_args(container["args"], {"JOB_COMPLETION_INDEX": "1"}) == {
        "model": "models:/recsys@champion",
        "output_dir": "/data/topk",
        "users": "all",
        "k": 10,
        "exclude_seen": True,
        "workers": 1,
        "device": "auto",
        "retrieval": "auto",
        "shard": "1/2",
    }


@pytest.mark.parametrize("shards", [1, 4, 12])
def test_each_pod_scores_its_shard(shards):
    spec = job_spec(render(values(shards=shards)))
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == shards
    (container,) = spec["template"]["spec"]["containers"]
    assert f"shard=$(JOB_COMPLETION_INDEX)/{shards}" in container["args"]
    # The variable the kubelet expands in args is declared in the container itself.
    env = env_of(container)
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_FIELD
    shards_read = {
        read_args(container["args"], {"JOB_COMPLETION_INDEX": str(index)})["shard"]
        for index in range(shards)
    }
    assert shards_read == {f"{index}/{shards}" for index in range(shards)}


@pytest.mark.parametrize(
    ("shards", "parallelism", "expected"), [(8, None, 8), (8, 3, 3), (4, 10, 4)]
)
def test_parallelism(shards, parallelism, expected):
    spec = job_spec(render(values(shards=shards, parallelism=parallelism)))
    assert spec["completions"] == shards
    assert spec["parallelism"] == expected


def test_settings_and_extra_args():
    args = ["data.processed_dir=/data/processed", "part_users=5000"]
    container = container_of(
        render(
            values(
                model="runs/2026-12/checkpoints/last.ckpt",
                users="lists/active.txt",
                k=50,
                excludeSeen=False,
                workers=4,
                device="cuda:1",
                retrieval="exact",
                outputDir="topk/2026-12-01/",
                extraArgs=args,
            )
        )
    )
    assert container["args"][-2:] == args
    assert read_args(container["args"]) == {
        "model": "runs/2026-12/checkpoints/last.ckpt",
        "output_dir": "/data/topk/2026-12-01",
        "users": "lists/active.txt",
        "k": 50,
        "exclude_seen": False,
        "workers": 4,
        "device": "cuda:1",
        "retrieval": "exact",
        "shard": "0/2",
        "data.processed_dir": "/data/processed",
        "part_users": 5000,
    }


@pytest.mark.parametrize(
    "text",
    [
        "models:/recsys/3",
        "recsys:latest",
        "with space",
        "a,b",
        "x=y",
        "it's",
        "back\\slash",
        "ends in a backslash\\",
        "quote after backslash\\'",
        "${oc.env:HOME}",
        "\\${not an escape}",
        "$(JOB_COMPLETION_INDEX)",
        "$$ and $HOME",
        "true",
        "null",
        "2026",
        "1e5",
        "nan",
        "[list]",
        "{dict: 1}",
        "fn(x)",
        '"double"',
        "tab\there",
        "ünïcödé",
    ],
)
def test_values_reach_recommend_as_written(text):
    """Any text reaches recsys-recommend unchanged through the kubelet's `$(...)` expansion,
    Hydra's override grammar and OmegaConf's interpolation; plain values stay unquoted."""
    container = container_of(render(values(users=text, outputDir=f"runs/{text}")))
    settings = read_args(container["args"])
    assert settings["users"] == text
    assert settings["output_dir"] == f"/data/runs/{text}"
    scheduled = container_of(render(values(users=text, outputDir=text, schedule=SCHEDULE)))
    assert read_args(scheduled["args"])["output_dir"] == f"/data/{text}/topk-batch-29000000"


def test_plain_values_stay_unquoted():
    container = container_of(
        render(values(model="recsys:abc123", bentomlHome="/data/bentoml", users="ids/u-1.csv"))
    )
    assert container["args"][:3] == [
        "model=recsys:abc123",
        "output_dir=/data/topk",
        "users=ids/u-1.csv",
    ]
    quoted = container_of(render(values(users="my users.csv", outputDir="2026")))
    assert "users='my users.csv'" in quoted["args"]
    assert "output_dir=/data/2026" in quoted["args"]  # a path, never a number
    assert "users='2026'" in container_of(render(values(users="2026")))["args"]


def test_cronjob():
    objects = render(values(schedule=SCHEDULE, shards=4))
    assert not [obj for obj in objects if obj["kind"] == "Job"]
    cron = one(objects, "CronJob")
    assert cron["metadata"]["name"] == "topk-batch"
    spec = cron["spec"]
    assert spec["schedule"] == SCHEDULE
    assert spec["concurrencyPolicy"] == "Forbid"
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    assert "timeZone" not in spec
    assert spec["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/component"] == "batch"
    job = spec["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == 4
    assert job["backoffLimitPerIndex"] == 2
    (container,) = job["template"]["spec"]["containers"]
    assert "shard=$(JOB_COMPLETION_INDEX)/4" in container["args"]
    # Every run writes a directory of its own: a rerun into the same one would only resume.
    assert "output_dir=/data/topk/$(JOB_NAME)" in container["args"]
    env = env_of(container)
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == INDEX_FIELD
    assert env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == JOB_NAME_FIELD
    zoned = one(
        render(
            values(
                schedule="@daily",
                timeZone="Europe/Berlin",
                concurrencyPolicy="Replace",
                successfulJobsHistoryLimit=1,
                failedJobsHistoryLimit=5,
            )
        ),
        "CronJob",
    )["spec"]
    assert zoned["schedule"] == "@daily" and zoned["timeZone"] == "Europe/Berlin"
    assert zoned["concurrencyPolicy"] == "Replace"
    assert (zoned["successfulJobsHistoryLimit"], zoned["failedJobsHistoryLimit"]) == (1, 5)


def test_cronjob_runs_the_one_off_job():
    """Past the output directory and the variable naming it, the CronJob's jobs are the Job."""
    once = job_spec(render(values()))
    scheduled = job_spec(render(values(schedule=SCHEDULE)))
    for spec in (once, scheduled):
        (container,) = spec["template"]["spec"]["containers"]
        container["args"] = [a for a in container["args"] if not a.startswith("output_dir=")]
        container["env"] = [e for e in container["env"] if e["name"] != "JOB_NAME"]
    assert scheduled == once


def test_gpus_per_pod():
    container = container_of(render(values(gpusPerPod=2, device="cuda")))
    assert container["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 2}
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert "device=cuda" in container["args"]
    cron = container_of(render(values(gpusPerPod=1, schedule=SCHEDULE)))
    assert cron["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_restricted_security(rendered):
    _, objects = rendered
    pod = job_spec(objects)["template"]["spec"]
    assert pod["securityContext"] == RESTRICTED_POD
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


def test_openshift_drops_the_fixed_ids():
    ids = ",".join(
        f"podSecurityContext.{key}=null" for key in ("runAsUser", "runAsGroup", "fsGroup")
    )
    objects = render({**values(), **helm.parse_set_string(ids)})
    pod = job_spec(objects)["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == RESTRICTED_CONTAINER
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(one(objects, "Job"), version, strict=True)


def test_security_contexts_are_values():
    objects = render(
        {
            **values(),
            "podSecurityContext": {"runAsUser": 2000},
            "securityContext": {"readOnlyRootFilesystem": False},
        }
    )
    pod = job_spec(objects)["template"]["spec"]
    assert pod["securityContext"] == {**RESTRICTED_POD, "runAsUser": 2000}
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False


def test_model_stores_and_extras(rendered):
    mode, _ = rendered
    schedule = SCHEDULE if mode == "cronjob" else ""
    extra = {
        "model": "recsys:latest",
        "mlflowTrackingUri": "",
        "bentomlHome": "/data/bentoml",
        "extraEnv": [{"name": "RECSYS_DEBUG", "value": "1"}],
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {}},
        "shmSize": "4Gi",
        "image": {"repository": "r", "tag": 7, "pullPolicy": "Always"},
    }
    objects = render(
        {**values(schedule=schedule, **extra), "imagePullSecrets": [{"name": "regcred"}]}
    )
    pod = job_spec(objects)["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["tolerations"][0]["key"] == "batch"
    assert pod["affinity"] == {"podAntiAffinity": {}}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod["volumes"]
    (container,) = pod["containers"]
    assert container["image"] == "r:7" and container["imagePullPolicy"] == "Always"
    env = env_of(container)
    assert env["BENTOML_HOME"]["value"] == "/data/bentoml"
    assert env["RECSYS_DEBUG"]["value"] == "1"
    assert "MLFLOW_TRACKING_URI" not in env
    assert "model=recsys:latest" in container["args"]


@pytest.mark.parametrize(
    ("batch", "named"),
    [
        ({"shards": 0}, "/batch/shards"),
        ({"shards": "2"}, "/batch/shards"),
        ({"parallelism": 0}, "/batch/parallelism"),
        ({"k": 0}, "/batch/k"),
        ({"workers": 0}, "/batch/workers"),
        ({"gpusPerPod": -1}, "/batch/gpusPerPod"),
        ({"backoffLimitPerIndex": -1}, "/batch/backoffLimitPerIndex"),
        ({"retrieval": "faiss"}, "/batch/retrieval"),
        ({"device": "gpu"}, "/batch/device"),
        ({"excludeSeen": "yes"}, "/batch/excludeSeen"),
        ({"outputDir": "/abs/topk"}, "/batch/outputDir"),
        ({"outputDir": "topk/../../etc"}, "/batch/outputDir"),
        ({"schedule": "daily"}, "/batch/schedule"),
        ({"concurrencyPolicy": "Never"}, "/batch/concurrencyPolicy"),
        ({"resources": {"limits": {"memory": "8GB"}}}, "/batch/resources/limits/memory"),
        ({"data": {"existingClaim": "c", "mountPath": "data"}}, "/batch/data/mountPath"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "/batch/image/pullPolicy"),
        ({"nodes": 2}, "'nodes'"),
        ({"gpus": 1}, "'gpus'"),
    ],
)
def test_bad_values_refused(batch, named):
    with pytest.raises(helm.HelmValuesError, match="schema") as refused:
        render(values(**batch))
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"training": {"nodes": 2}}, "'training'"),  # the training chart's, not this one's
        ({"image": {"repository": "r"}}, "'image'"),  # the service's
        ({"podSecurityContext": {"runAsUser": "1034"}}, "/podSecurityContext/runAsUser"),
        ({"securityContext": {"privilegd": True}}, "'privilegd'"),
    ],
)
def test_bad_top_level_values_refused(extra, named):
    with pytest.raises(helm.HelmValuesError, match="schema") as refused:
        render({**values(), **extra})
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"image": {"repository": ""}}, "batch.image.repository is required"),
        ({"model": ""}, "batch.model is required"),
        ({"data": {"existingClaim": ""}}, "batch.data.existingClaim is required"),
        ({"mlflowTrackingUri": ""}, "is an MLflow model: set batch.mlflowTrackingUri"),
        ({"model": "recsys:latest"}, "is a BentoML tag: set batch.bentomlHome"),
    ],
    ids=["no-image", "no-model", "no-claim", "mlflow-without-uri", "bento-without-store"],
)
@pytest.mark.parametrize("schedule", ["", SCHEDULE], ids=["job", "cronjob"])
def test_missing_values_fail_clearly(batch, message, schedule):
    with pytest.raises(helm.HelmRenderError) as failed:
        render(values(schedule=schedule, **batch))
    assert message in str(failed.value)


def test_model_stores_from_extra_env_or_none_needed():
    from_secret = {"name": "MLFLOW_TRACKING_URI", "valueFrom": {"secretKeyRef": {"name": "m"}}}
    container = container_of(render(values(mlflowTrackingUri="", extraEnv=[from_secret])))
    assert env_of(container)["MLFLOW_TRACKING_URI"] == from_secret
    store = {"name": "BENTOML_HOME", "value": "/data/bentoml"}
    container = container_of(render(values(model="recsys", extraEnv=[store])))
    assert "model=recsys" in container["args"]
    # A checkpoint needs neither store.
    for checkpoint in ("/data/runs/x/checkpoints/last.ckpt", "last.ckpt"):
        container = container_of(render(values(model=checkpoint, mlflowTrackingUri="")))
        assert f"model={checkpoint}" in container["args"]


@pytest.mark.parametrize("schedule", ["", SCHEDULE], ids=["job", "cronjob"])
def test_names_fit_pod_hostnames(schedule):
    """Pods are `<job>-<index>` (hostnames, at most 63 characters); a CronJob's jobs are
    `<cronjob>-<scheduled minute>`, 9 more characters, and its name at most 52."""
    objects = render_chart(
        values(shards=12, schedule=schedule), chart=CHART, release="r" * 60, revision=123
    )
    (obj,) = (o for o in objects if o["kind"] in {"Job", "CronJob"})
    name = obj["metadata"]["name"]
    if schedule:
        assert len(name) <= 52 and len(f"{name}-29000000-11") <= 63
    else:
        assert name.endswith("-123") and len(f"{name}-11") <= 63


def test_release_names():
    """`<release>-batch`, or the release alone when it says batch; fullnameOverride wins."""
    named = render_chart(values(), chart=CHART, release="batch-topk", revision=2)
    assert one(named, "Job")["metadata"]["name"] == "batch-topk-2"
    assert one(named, "ServiceAccount")["metadata"]["name"] == "batch-topk"
    overridden = render({**values(schedule=SCHEDULE), "fullnameOverride": "nightly"})
    assert one(overridden, "CronJob")["metadata"]["name"] == "nightly"


@pytest.mark.parametrize("schedule", ["", SCHEDULE], ids=["job", "cronjob"])
def test_install_dry_run(schedule):
    with helm.Config(storage_driver="memory", namespace="ml") as config:
        release = config.install(CHART, "topk", values(schedule=schedule), dry_run="client")
    assert release["status"] == "pending-install"
    kind = "CronJob" if schedule else "Job"
    assert f"kind: {kind}\n" in release["manifest"]
    assert "kubectl -n ml logs -f" in release["notes"]
    if schedule:
        assert "CronJob topk-batch" in release["notes"]
        assert "/data/topk/<that Job's name>" in release["notes"]
    else:
        assert "Indexed Job topk-batch-1 writes /data/topk" in release["notes"]
