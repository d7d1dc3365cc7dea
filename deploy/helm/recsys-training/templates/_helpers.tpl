{{/*
The chart name, or nameOverride: the app.kubernetes.io/name label.
*/}}
{{- define "recsys-training.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base of the release's resource names: `<release>-train`, or the release name alone when
it already says "train" (e.g. `helm install train-2026-12 ...`), or fullnameOverride.
*/}}
{{- define "recsys-training.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "train" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-train" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "recsys-training.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "recsys-training.labels" -}}
helm.sh/chart: {{ include "recsys-training.chart" . }}
{{ include "recsys-training.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recsys
app.kubernetes.io/component: training
{{- end }}

{{/*
Labels of the release's training pods (the headless Service's selector).
*/}}
{{- define "recsys-training.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys-training.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the training pods run as.
*/}}
{{- define "recsys-training.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys-training.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The headless Service of the Indexed Job, and the name of the run's workload (Job, PyTorchJob,
TrainJob and its TrainingRuntime). The workload name carries the release revision: a Job's pod
template is immutable, so an upgrade replaces the run (a resume) instead of failing. Pod
hostnames (`<job>-<index>`, `<job>-worker-<index>`, `<trainjob>-node-0-<index>`) must stay
within 63 characters.
*/}}
{{- define "recsys-training.serviceName" -}}
{{- include "recsys-training.fullname" . | trunc 45 | trimSuffix "-" }}
{{- end }}

{{- define "recsys-training.jobName" -}}
{{- printf "%s-%d" (include "recsys-training.serviceName" .) (int .Release.Revision) }}
{{- end }}

{{/*
The training image: recsys with its training stack (deploy/docker/train.Dockerfile). The
Bento image serves only (no Lightning, Hydra or MLflow), so there is no default repository.
*/}}
{{- define "recsys-training.image" -}}
{{- $repository := required "training.image.repository is required: an image with recsys and its training dependencies, e.g. built from deploy/docker/train.Dockerfile (the Bento image only serves)" .Values.training.image.repository }}
{{- $tag := .Values.training.image.tag | toString | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "recsys-training.pullPolicy" -}}
{{- .Values.training.image.pullPolicy | default "IfNotPresent" }}
{{- end }}

{{/*
DDP processes per node: one per GPU, or one gloo process on CPU.
*/}}
{{- define "recsys-training.procsPerNode" -}}
{{- max 1 (int .Values.training.gpusPerNode) }}
{{- end }}

{{/*
One shell word: kept as is when it holds no shell syntax, single-quoted otherwise.
*/}}
{{- define "recsys-training.shellWord" -}}
{{- if regexMatch "^[A-Za-z0-9_./:=@+,%-]+$" . }}
{{- . }}
{{- else }}
{{- printf "'%s'" (replace "'" "'\\''" .) }}
{{- end }}
{{- end }}

{{/*
The command each training node runs through `/bin/sh -c`; `exec` makes torchrun the shell's
successor so it receives SIGTERM and stops its workers. The rendezvous differs by operator, so
the caller passes it as shell words: nodeRank, masterAddr and masterPort (the shell expands the
variables the Job controller or the operator sets), and runDir, the run's directory under
training.runDir (one per run, shared by all nodes). With no GPUs, each node runs one gloo
process on CPU.
Call with (dict "root" $ "nodeRank" ... "masterAddr" ... "masterPort" ... "runDir" ...).
*/}}
{{- define "recsys-training.command" -}}
{{- $t := .root.Values.training }}
{{- $nodes := int $t.nodes }}
{{- $procs := int (include "recsys-training.procsPerNode" .root) }}
{{- $words := list "exec" "torchrun"
  (printf "--nnodes=%d" $nodes)
  (printf "--nproc-per-node=%d" $procs)
  (printf "--node-rank=%s" .nodeRank)
  (printf "--master-addr=%s" .masterAddr)
  (printf "--master-port=%s" .masterPort)
  "--no-python" "recsys-train" "trainer=ddp"
  (printf "trainer.num_nodes=%d" $nodes)
  (printf "trainer.devices=%d" $procs)
  (include "recsys-training.shellWord" (printf "data.processed_dir=%s" $t.processedDir))
  (printf "%s/%s" (include "recsys-training.shellWord" (printf "hydra.run.dir=%s" (trimSuffix "/" $t.runDir))) .runDir)
  "logger=mlflow" }}
{{- if eq (int $t.gpusPerNode) 0 }}
{{- $words = concat $words (list "trainer.accelerator=cpu" "trainer.strategy.process_group_backend=gloo") }}
{{- end }}
{{- range $t.extraArgs }}
{{- $words = append $words (include "recsys-training.shellWord" .) }}
{{- end }}
{{- join " " $words }}
{{- end }}

{{/*
Environment of the training container. `runId` names a variable holding the run directory's
name, read from the pod label `runIdLabel`; leave both empty when the directory is fixed.
Call with (dict "root" $ "runId" ... "runIdLabel" ...).
*/}}
{{- define "recsys-training.env" -}}
{{- $t := .root.Values.training -}}
# OpenMP threads sleep at barriers instead of spinning (10x slower on busy nodes).
- name: OMP_WAIT_POLICY
  value: PASSIVE
# The root filesystem is read-only: caches and config (matplotlib, torch) go to /tmp.
- name: HOME
  value: /tmp
- name: MLFLOW_TRACKING_URI
  {{- if $t.mlflow.existingSecret.name }}
  valueFrom:
    secretKeyRef:
      name: {{ $t.mlflow.existingSecret.name }}
      key: {{ required "training.mlflow.existingSecret.key is required with its name" $t.mlflow.existingSecret.key }}
  {{- else if $t.mlflow.trackingUri }}
  value: {{ $t.mlflow.trackingUri | quote }}
  {{- else }}
  value: {{ printf "sqlite:///%s/mlflow.db" (trimSuffix "/" $t.runDir) | quote }}
  {{- end }}
{{- if .runId }}
# The run directory's name: the same on every node, new for every run.
- name: {{ .runId }}
  valueFrom:
    fieldRef:
      fieldPath: {{ printf "metadata.labels['%s']" .runIdLabel }}
{{- end }}
{{- with $t.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Requests and limits per node with `gpusPerNode` NVIDIA GPUs added to both.
*/}}
{{- define "recsys-training.resources" -}}
{{- $t := .Values.training }}
{{- $resources := deepCopy ($t.resources | default dict) }}
{{- $gpu := int $t.gpusPerNode }}
{{- if gt $gpu 0 }}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" $gpu) ($resources.requests | default dict)) }}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" $gpu) ($resources.limits | default dict)) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
The training container's fields every operator shares: working directory on the claim (relative
paths of Hydra and MLflow land there, not in the read-only image), security context, mounts.
*/}}
{{- define "recsys-training.containerCommon" -}}
workingDir: {{ .Values.training.data.mountPath }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: data
    mountPath: {{ .Values.training.data.mountPath }}
  - name: tmp
    mountPath: /tmp
  - name: dshm
    mountPath: /dev/shm
{{- end }}

{{/*
The pod spec fields every operator shares (all but containers and restartPolicy).
*/}}
{{- define "recsys-training.podCommon" -}}
{{- $t := .Values.training -}}
{{- $claim := required "training.data.existingClaim is required: a PersistentVolumeClaim (ReadWriteMany for several nodes) holding training.processedDir" $t.data.existingClaim -}}
serviceAccountName: {{ include "recsys-training.serviceAccountName" . }}
# Training never talks to the Kubernetes API.
automountServiceAccountToken: false
# Service links would inject <SERVICE>_PORT=tcp://... variables that collide with settings.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {{ $claim }}
  - name: tmp
    emptyDir: {}
  # DDP and DataLoader workers share tensors through /dev/shm; the runtime's default is 64 MiB.
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $t.shmSize }}
{{- with $t.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $t.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
