"""The training chart deploy/helm/recsys-training offline: lint, values schema, the built-in
objects checked against Kubernetes' own (strict) schemas, and the operators' custom resources
(Kubeflow PyTorchJob, Trainer TrainJob and TrainingRuntime) checked field by field, with the pod
templates they embed validated as Kubernetes objects."""

from __future__ import annotations

import shlex
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.deploy.render import TRAINING_CHART as CHART
from tests.deploy.render import render as render_chart
from tests.deploy.render import train_command

KUBE_VERSIONS = ["1.29.0", "1.33.0"]
OPERATORS = ["job", "pytorchjob", "trainjob"]
TRAINING = {
    "nodes": 3,
    "gpusPerNode": 4,
    "image": {"repository": "registry.example.com/trainer", "tag": "0.1.0"},
    "data": {"existingClaim": "recsys-data"},
}
KINDS = {
    "job": {"ServiceAccount", "Job", "Service"},
    "pytorchjob": {"ServiceAccount", "PyTorchJob"},
    "trainjob": {"ServiceAccount", "TrainingRuntime", "TrainJob"},
}
CUSTOM_KINDS = {"PyTorchJob", "TrainingRuntime", "TrainJob"}
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
GPUS = {"nvidia.com/gpu": 4}
# What every operator runs after its own rendezvous flags (nodes x GPUs of TRAINING).
TRAIN_ARGS = [
    "--no-python",
    "recsys-train",
    "trainer=ddp",
    "trainer.num_nodes=3",
    "trainer.devices=4",
    "data.processed_dir=/data/processed",
]


def values(operator: str = "job", **training: Any) -> dict[str, Any]:
    return {"training": {**TRAINING, "operator": operator, **training}}


def render(chart_values: dict[str, Any] | None, **options: Any) -> list[dict[str, Any]]:
    return render_chart(chart_values, chart=CHART, **options)


def one(objects: list[dict], kind: str) -> dict[str, Any]:
    matches = [obj for obj in objects if obj["kind"] == kind]
    assert len(matches) == 1, f"{len(matches)} {kind} objects"
    return matches[0]


def env_of(container: dict) -> dict[str, dict]:
    return {var["name"]: var for var in container.get("env", [])}


def words_of(container_or_trainer: dict) -> list[str]:
    assert container_or_trainer["command"] == ["/bin/sh", "-c"]
    (command,) = container_or_trainer["args"]
    return shlex.split(command)


def pod_templates(obj: dict) -> list[dict]:
    """The pod templates (metadata + spec) a training object carries."""
    if obj["kind"] == "Job":
        return [obj["spec"]["template"]]
    if obj["kind"] == "PyTorchJob":
        return [spec["template"] for spec in obj["spec"]["pytorchReplicaSpecs"].values()]
    if obj["kind"] == "TrainingRuntime":
        jobs = obj["spec"]["template"]["spec"]["replicatedJobs"]
        return [job["template"]["spec"]["template"] for job in jobs]
    return []


def runners(objects: list[dict]) -> list[dict]:
    """What carries the torchrun command: the containers of the Job or PyTorchJob, or the
    TrainJob's trainer."""
    (obj,) = (o for o in objects if o["kind"] in {"Job", "PyTorchJob", "TrainJob"})
    if obj["kind"] == "TrainJob":
        return [obj["spec"]["trainer"]]
    return [template["spec"]["containers"][0] for template in pod_templates(obj)]


def as_pod_template(template: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "t"},
        "template": template,
    }


@pytest.fixture(scope="module", params=OPERATORS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(values(request.param))


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("version", [f"v{v}" for v in KUBE_VERSIONS])
def test_lint_strict(operator, version):
    report = helm.lint(CHART, values(operator), strict=True, kube_version=version)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_lint_chart_defaults():
    """A platform's CI can lint the chart as it is (required values only warn in lint mode)."""
    report = helm.lint(CHART, None, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_kinds(rendered):
    operator, objects = rendered
    assert {obj["kind"] for obj in objects} == KINDS[operator]
    assert render({"training": {**TRAINING, "enabled": False}}) == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_objects_valid_for_kubernetes(rendered, version):
    """Built-in kinds strictly; the operators' kinds are not in Kubernetes' schemas, so the pod
    templates they embed are validated as PodTemplates (and the runtime's Job spec as a Job)."""
    operator, objects = rendered
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            for template in pod_templates(obj):
                kubernetes_validate.validate(as_pod_template(template), version, strict=True)
        else:
            assert kubernetes_validate.validate(obj, version, strict=True) == version[:4]
    if operator == "trainjob":
        (node,) = one(objects, "TrainingRuntime")["spec"]["template"]["spec"]["replicatedJobs"]
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "node"}}
        kubernetes_validate.validate(
            {**job, "spec": node["template"]["spec"]}, version, strict=True
        )
        # The TrainJob's trainer becomes the runtime's container named node.
        trainer = one(objects, "TrainJob")["spec"]["trainer"]
        container = {
            "name": "node",
            "image": trainer["image"],
            "command": trainer["command"],
            "args": trainer["args"],
            "env": trainer["env"],
            "resources": trainer["resourcesPerNode"],
        }
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}}
        kubernetes_validate.validate(
            {**pod, "spec": {"containers": [container]}}, version, strict=True
        )


def test_restricted_security(rendered):
    _, objects = rendered
    specs = [template["spec"] for obj in objects for template in pod_templates(obj)]
    assert specs
    for spec in specs:
        assert spec["securityContext"] == RESTRICTED_POD
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == "recsys-train"
        (container,) = spec["containers"]
        assert container["securityContext"] == RESTRICTED_CONTAINER
        assert container["workingDir"] == "/data"
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("operator", OPERATORS)
def test_openshift_drops_the_fixed_ids(operator):
    ids = ",".join(
        f"podSecurityContext.{key}=null" for key in ("runAsUser", "runAsGroup", "fsGroup")
    )
    objects = render({**values(operator), **helm.parse_set_string(ids)})
    for obj in objects:
        for template in pod_templates(obj):
            assert template["spec"]["securityContext"] == {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            assert template["spec"]["containers"][0]["securityContext"] == RESTRICTED_CONTAINER
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(as_pod_template(template), version, strict=True)


def test_security_contexts_are_values():
    objects = render(
        {
            **values(),
            "podSecurityContext": {"runAsUser": 2000, "fsGroupChangePolicy": "OnRootMismatch"},
            "securityContext": {"readOnlyRootFilesystem": False},
        }
    )
    spec = one(objects, "Job")["spec"]["template"]["spec"]
    assert spec["securityContext"] == {
        **RESTRICTED_POD,
        "runAsUser": 2000,
        "fsGroupChangePolicy": "OnRootMismatch",
    }
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False


def test_job():
    objects = render(values())
    job = one(objects, "Job")
    headless = one(objects, "Service")
    spec = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == "recsys-train-1"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert job["spec"]["backoffLimit"] == 0
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert spec["restartPolicy"] == "Never"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert spec["subdomain"] == headless["metadata"]["name"] == "recsys-train"
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    (container,) = spec["containers"]
    assert container["image"] == "registry.example.com/trainer:0.1.0"
    assert container["ports"] == [{"name": "rendezvous", "containerPort": 29500, "protocol": "TCP"}]
    assert GPUS.items() <= container["resources"]["requests"].items()
    assert GPUS.items() <= container["resources"]["limits"].items()
    env = env_of(container)
    assert env["OMP_WAIT_POLICY"]["value"] == "PASSIVE"
    uid_ref = env["JOB_UID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert uid_ref == "metadata.labels['batch.kubernetes.io/controller-uid']"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/data"]]["persistentVolumeClaim"] == {"claimName": "recsys-data"}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    kept = one(render(values(ttlSecondsAfterFinished=3600)), "Job")
    assert kept["spec"]["ttlSecondsAfterFinished"] == 3600


def test_train_command_gpu():
    assert train_command(values()) == (
        "exec torchrun --nnodes=3 --nproc-per-node=4 --node-rank=$JOB_COMPLETION_INDEX"
        " --master-addr=recsys-train-1-0.recsys-train --master-port=29500 --no-python"
        " recsys-train trainer=ddp trainer.num_nodes=3 trainer.devices=4"
        " data.processed_dir=/data/processed hydra.run.dir=/data/runs/$JOB_UID logger=mlflow"
    )


def test_train_command_cpu_and_extra_args():
    args = ["model=neumf", "tags=[multi node]", "trainer.max_epochs=5", "it's"]
    training = {"nodes": 2, "gpusPerNode": 0, "runDir": "/data/my runs/", "extraArgs": args}
    words = shlex.split(train_command(values(**training)))
    assert words[:4] == ["exec", "torchrun", "--nnodes=2", "--nproc-per-node=1"]
    assert "trainer.num_nodes=2" in words and "trainer.devices=1" in words
    assert "hydra.run.dir=/data/my runs/$JOB_UID" in words
    # CPU nodes: one gloo process each, then the user's overrides (which may override those).
    tail = words[words.index("logger=mlflow") + 1 :]
    assert tail == ["trainer.accelerator=cpu", "trainer.strategy.process_group_backend=gloo", *args]


def test_train_command_takes_values_written_for_both_charts():
    """The serving chart's keys (image, ...) are dropped: one values file may hold both."""
    both = {"image": {"repository": "registry.example.com/recsys"}, **values()}
    assert train_command(both) == train_command(values())


def test_pytorchjob():
    objects = render(values("pytorchjob", ttlSecondsAfterFinished=600))
    job = one(objects, "PyTorchJob")
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert job["metadata"]["name"] == "recsys-train-1"
    spec = job["spec"]
    assert spec["nprocPerNode"] == "4"  # a string in kubeflow.org/v1
    assert spec["runPolicy"] == {
        "backoffLimit": 0,
        "cleanPodPolicy": "None",
        "ttlSecondsAfterFinished": 600,
    }
    replicas = spec["pytorchReplicaSpecs"]
    assert {kind: r["replicas"] for kind, r in replicas.items()} == {"Master": 1, "Worker": 2}
    for replica in replicas.values():
        assert replica["restartPolicy"] == "Never"
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"  # the operator's container
        assert container["image"] == "registry.example.com/trainer:0.1.0"
        assert container["ports"] == [
            {"name": "pytorchjob-port", "containerPort": 29500, "protocol": "TCP"}
        ]
        assert GPUS.items() <= container["resources"]["limits"].items()
        words = words_of(container)
        # The operator's variables: RANK is the node rank (Master 0, Worker i is i + 1).
        assert words[:7] == [
            "exec",
            "torchrun",
            "--nnodes=3",
            "--nproc-per-node=4",
            "--node-rank=$RANK",
            "--master-addr=$MASTER_ADDR",
            "--master-port=$MASTER_PORT",
        ]
        assert words[7:13] == TRAIN_ARGS
        assert "hydra.run.dir=/data/runs/recsys-train-1" in words
        assert "JOB_UID" not in env_of(container)
    single = one(render(values("pytorchjob", nodes=1)), "PyTorchJob")
    assert list(single["spec"]["pytorchReplicaSpecs"]) == ["Master"]


def test_trainjob():
    objects = render(values("trainjob"))
    runtime = one(objects, "TrainingRuntime")
    trainjob = one(objects, "TrainJob")
    assert runtime["apiVersion"] == trainjob["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert trainjob["metadata"]["name"] == runtime["metadata"]["name"] == "recsys-train-1"
    assert trainjob["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "TrainingRuntime",
        "name": "recsys-train-1",
    }
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 3, "torch": {"numProcPerNode": 4}}
    (node,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node" and node["replicas"] == 1
    # The Trainer applies the TrainJob's trainer to the job labelled as its ancestor...
    labels = node["template"]["metadata"]["labels"]
    assert labels["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    assert node["template"]["spec"]["backoffLimit"] == 0
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # ...and to its container named node.
    (container,) = pod["containers"]
    assert container["name"] == "node"
    trainer = trainjob["spec"]["trainer"]
    assert trainer["image"] == container["image"] == "registry.example.com/trainer:0.1.0"
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert GPUS.items() <= trainer["resourcesPerNode"]["requests"].items()
    assert GPUS.items() <= trainer["resourcesPerNode"]["limits"].items()
    words = words_of(trainer)
    assert words[:7] == [
        "exec",
        "torchrun",
        "--nnodes=3",
        "--nproc-per-node=4",
        "--node-rank=$PET_NODE_RANK",
        "--master-addr=$PET_MASTER_ADDR",
        "--master-port=$PET_MASTER_PORT",
    ]
    assert words[7:13] == TRAIN_ARGS
    assert "hydra.run.dir=/data/runs/$JOB_UID" in words
    env = env_of(trainer)
    # The Trainer refuses a TrainJob that sets torchrun's own variables.
    assert not [name for name in env if name.startswith("PET_")]
    uid_ref = env["JOB_UID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert uid_ref == "metadata.labels['batch.kubernetes.io/controller-uid']"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/data", "/tmp", "/dev/shm"}


def test_every_operator_trains_the_same_way(rendered):
    """Past the rendezvous flags and the run directory, the commands are one and the same."""
    _, objects = rendered
    reference = shlex.split(train_command(values()))
    for runner in runners(objects):
        words = words_of(runner)
        assert len(words) == len(reference)
        differing = {a.split("=")[0] for a, b in zip(words, reference, strict=True) if a != b}
        assert differing <= {"--node-rank", "--master-addr", "--master-port", "hydra.run.dir"}


@pytest.mark.parametrize("operator", OPERATORS)
def test_names_fit_pod_hostnames(operator):
    """Hostnames <job>-<index>, <job>-worker-<index> and <trainjob>-node-0-<index> stay DNS
    labels (63 characters) for any release name and revision."""
    release = "r" * 53
    objects = render(values(operator, nodes=12), release=release, revision=123)
    suffix = {"job": "-11", "pytorchjob": "-worker-10", "trainjob": "-node-0-11"}[operator]
    (obj,) = (o for o in objects if o["kind"] in {"Job", "PyTorchJob", "TrainJob"})
    name = obj["metadata"]["name"]
    assert name.endswith("-123") and len(name + suffix) <= 63


def test_release_names():
    """`<release>-train`, or the release alone when it says train; the revision names the run."""
    named = render(values(), release="train-2026-12", revision=2)
    assert one(named, "Job")["metadata"]["name"] == "train-2026-12-2"
    assert one(named, "Service")["metadata"]["name"] == "train-2026-12"
    assert one(named, "ServiceAccount")["metadata"]["name"] == "train-2026-12"
    words = words_of(one(named, "Job")["spec"]["template"]["spec"]["containers"][0])
    assert "--master-addr=train-2026-12-2-0.train-2026-12" in words


@pytest.mark.parametrize(
    ("mlflow", "expected"),
    [
        ({"trackingUri": "http://mlflow:5000"}, {"value": "http://mlflow:5000"}),
        (
            {"trackingUri": "ignored", "existingSecret": {"name": "mlflow", "key": "uri"}},
            {"valueFrom": {"secretKeyRef": {"name": "mlflow", "key": "uri"}}},
        ),
        ({}, {"value": "sqlite:////data/runs/mlflow.db"}),
    ],
    ids=["value", "secret", "default"],
)
@pytest.mark.parametrize("operator", OPERATORS)
def test_mlflow_tracking_uri(operator, mlflow, expected):
    for runner in runners(render(values(operator, mlflow=mlflow))):
        env = env_of(runner)
        assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", **expected}


def test_scheduling_and_extras(rendered):
    operator, _ = rendered
    extra = {
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "extraEnv": [{"name": "NCCL_DEBUG", "value": "INFO"}],
        "shmSize": "8Gi",
        "image": {"repository": "r", "tag": 7, "pullPolicy": "Always"},
    }
    objects = render({**values(operator, **extra), "imagePullSecrets": [{"name": "regcred"}]})
    for obj in objects:
        for template in pod_templates(obj):
            spec = template["spec"]
            assert spec["nodeSelector"] == {"pool": "gpu"}
            assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
            assert spec["imagePullSecrets"] == [{"name": "regcred"}]
            dshm = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}
            assert dshm in spec["volumes"]
            (container,) = spec["containers"]
            assert container["image"] == "r:7" and container["imagePullPolicy"] == "Always"
    for runner in runners(objects):
        assert env_of(runner)["NCCL_DEBUG"]["value"] == "INFO"


@pytest.mark.parametrize(
    ("training", "named"),
    [
        ({"operator": "mpijob"}, "/training/operator"),
        ({"nodes": 0}, "/training/nodes"),
        ({"gpusPerNode": -1}, "/training/gpusPerNode"),
        ({"masterPort": "29500"}, "/training/masterPort"),
        ({"backoffLimit": -1}, "/training/backoffLimit"),
        ({"resources": {"limits": {"memory": "8GB"}}}, "/training/resources/limits/memory"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "/training/image/pullPolicy"),
        ({"workers": 2}, "'workers'"),
    ],
)
def test_bad_values_refused(training, named):
    with pytest.raises(helm.HelmValuesError, match="schema") as refused:
        render(values(**training))
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"image": {"repository": "r"}}, "'image'"),  # the service's, not this chart's
        ({"podSecurityContext": {"runAsUser": "1034"}}, "/podSecurityContext/runAsUser"),
        ({"securityContext": {"privilegd": True}}, "'privilegd'"),
    ],
)
def test_bad_top_level_values_refused(extra, named):
    with pytest.raises(helm.HelmValuesError, match="schema") as refused:
        render({**values(), **extra})
    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"image": {"repository": ""}}, "training.image.repository is required"),
        ({"data": {"existingClaim": ""}}, "training.data.existingClaim is required"),
        (
            {"mlflow": {"existingSecret": {"name": "mlflow"}}},
            "training.mlflow.existingSecret.key is required",
        ),
        (
            {"operator": "trainjob", "ttlSecondsAfterFinished": 60},
            "training.ttlSecondsAfterFinished applies to training.operator=job or pytorchjob",
        ),
    ],
    ids=["no-image", "no-claim", "secret-without-key", "trainjob-ttl"],
)
def test_inconsistent_values_fail_clearly(training, message):
    with pytest.raises(helm.HelmRenderError) as failed:
        render(values(**training))
    assert message in str(failed.value)


@pytest.mark.parametrize("operator", OPERATORS)
def test_install_dry_run(operator):
    with helm.Config(storage_driver="memory", namespace="ml") as config:
        release = config.install(CHART, "train-1", values(operator), dry_run="client")
    assert release["status"] == "pending-install"
    kind = {"job": "Job", "pytorchjob": "PyTorchJob", "trainjob": "TrainJob"}[operator]
    assert f"kind: {kind}\n" in release["manifest"]
    assert "kubectl -n ml logs -f" in release["notes"]
    assert "train-1-1" in release["notes"]
