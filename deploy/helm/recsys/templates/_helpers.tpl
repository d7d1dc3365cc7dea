{{/*
The chart name, or nameOverride.
*/}}
{{- define "recsys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's resources; 63 characters at most (DNS label). A release name
that already contains the chart name is used as is.
*/}}
{{- define "recsys.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "recsys.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "recsys.labels" -}}
helm.sh/chart: {{ include "recsys.chart" . }}
{{ include "recsys.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recsys
{{- end }}

{{/*
Labels shared by all pods of the release.
*/}}
{{- define "recsys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The serving pods only: Service, PDB and NetworkPolicy must never select training pods.
*/}}
{{- define "recsys.serverSelectorLabels" -}}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
The training pods only (the headless Service's selector).
*/}}
{{- define "recsys.trainingSelectorLabels" -}}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/component: training
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "recsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The service image; the tag defaults to the chart's appVersion.
*/}}
{{- define "recsys.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | toString | default .Chart.AppVersion) }}
{{- end }}

{{/*
The training image: recsys with its training stack (deploy/docker/train.Dockerfile). The
Bento image serves only (no Lightning, Hydra or MLflow), so there is no default repository.
*/}}
{{- define "recsys.trainingImage" -}}
{{- $repository := required "training.image.repository is required when training.enabled=true: an image with recsys and its training dependencies, e.g. built from deploy/docker/train.Dockerfile (the Bento image only serves)" .Values.training.image.repository }}
{{- $tag := .Values.training.image.tag | toString | default (.Values.image.tag | toString) | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
Restricted pod securityContext (Pod Security Standards "restricted") for the uid/gid given;
1034 is the `bentoml` user that `bentoml containerize` creates and that owns the Bento.
*/}}
{{- define "recsys.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Restricted container securityContext.
*/}}
{{- define "recsys.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
Requests and limits with `gpu` NVIDIA GPUs added to both.
Call with (dict "resources" <requests/limits> "gpu" <count>).
*/}}
{{- define "recsys.resources" -}}
{{- $resources := deepCopy (.resources | default dict) }}
{{- $gpu := int .gpu }}
{{- if gt $gpu 0 }}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" $gpu) ($resources.requests | default dict)) }}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" $gpu) ($resources.limits | default dict)) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
Names of the training Job and its headless Service. The Job carries the release revision:
its pod template is immutable, so each install/upgrade starts a new Job. Its pods' hostnames
are `<job>-<index>` and must stay within 63 characters.
*/}}
{{- define "recsys.trainServiceName" -}}
{{- printf "%s-train" (include "recsys.fullname" . | trunc 50 | trimSuffix "-") }}
{{- end }}

{{- define "recsys.trainJobName" -}}
{{- printf "%s-%d" (include "recsys.trainServiceName" .) (int .Release.Revision) }}
{{- end }}

{{/*
One shell word: kept as is when it holds no shell syntax, single-quoted otherwise.
*/}}
{{- define "recsys.shellWord" -}}
{{- if regexMatch "^[A-Za-z0-9_./:=@+,%-]+$" . }}
{{- . }}
{{- else }}
{{- printf "'%s'" (replace "'" "'\\''" .) }}
{{- end }}
{{- end }}

{{/*
The command each training node runs through `/bin/sh -c`: $JOB_COMPLETION_INDEX (set by the
Indexed Job) is the node rank, pod 0 is the master, $JOB_UID names the run directory. `exec`
makes torchrun the shell's successor so it receives SIGTERM and stops its workers. With no
GPUs, each node runs one gloo process on CPU.
*/}}
{{- define "recsys.trainCommand" -}}
{{- $t := .Values.training }}
{{- $nodes := int $t.nodes }}
{{- $gpus := int $t.gpusPerNode }}
{{- $procs := max 1 $gpus }}
{{- $master := printf "%s-0.%s" (include "recsys.trainJobName" .) (include "recsys.trainServiceName" .) }}
{{- $words := list "exec" "torchrun"
  (printf "--nnodes=%d" $nodes)
  (printf "--nproc-per-node=%d" $procs)
  "--node-rank=$JOB_COMPLETION_INDEX"
  (printf "--master-addr=%s" $master)
  (printf "--master-port=%d" (int $t.masterPort))
  "--no-python" "recsys-train" "trainer=ddp"
  (printf "trainer.num_nodes=%d" $nodes)
  (printf "trainer.devices=%d" $procs)
  (include "recsys.shellWord" (printf "data.processed_dir=%s" $t.processedDir))
  (printf "%s/$JOB_UID" (include "recsys.shellWord" (printf "hydra.run.dir=%s" (trimSuffix "/" $t.runDir))))
  "logger=mlflow" }}
{{- if eq $gpus 0 }}
{{- $words = concat $words (list "trainer.accelerator=cpu" "trainer.strategy.process_group_backend=gloo") }}
{{- end }}
{{- range $t.extraArgs }}
{{- $words = append $words (include "recsys.shellWord" .) }}
{{- end }}
{{- join " " $words }}
{{- end }}
