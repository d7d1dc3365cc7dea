{{/*
The chart name, or nameOverride: the app.kubernetes.io/name label.
*/}}
{{- define "recsys-batch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base of the release's resource names: `<release>-batch`, or the release name alone when
it already says "batch", or fullnameOverride.
*/}}
{{- define "recsys-batch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "batch" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-batch" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "recsys-batch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "recsys-batch.labels" -}}
helm.sh/chart: {{ include "recsys-batch.chart" . }}
{{ include "recsys-batch.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: recsys
app.kubernetes.io/component: batch
{{- end }}

{{/*
Labels that pick the release's scoring pods.
*/}}
{{- define "recsys-batch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "recsys-batch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the scoring pods run as.
*/}}
{{- define "recsys-batch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "recsys-batch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The name of the workload. An Indexed Job's pods are named (and their hostnames set) after the
Job and the index, within 63 characters, so the base is cut to 45. The one-off Job carries the
release revision: its pod template is immutable, so `helm upgrade` replaces it with a new Job
(which resumes in the same outputDir) instead of failing. A CronJob's template can change, so
it keeps the base; its Jobs are `<cronjob>-<scheduled minute>` (8 more digits and a dash).
*/}}
{{- define "recsys-batch.baseName" -}}
{{- include "recsys-batch.fullname" . | trunc 45 | trimSuffix "-" }}
{{- end }}

{{- define "recsys-batch.jobName" -}}
{{- printf "%s-%d" (include "recsys-batch.baseName" .) (int .Release.Revision) }}
{{- end }}

{{/*
The scoring image: recsys with its console scripts, e.g. the training image
(deploy/docker/train.Dockerfile); no default repository.
*/}}
{{- define "recsys-batch.image" -}}
{{- $repository := required "batch.image.repository is required: an image with recsys and its console scripts (recsys-recommend), e.g. built from deploy/docker/train.Dockerfile" .Values.batch.image.repository }}
{{- $tag := .Values.batch.image.tag | toString | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "recsys-batch.pullPolicy" -}}
{{- .Values.batch.image.pullPolicy | default "IfNotPresent" }}
{{- end }}

{{/*
Pods running at once: parallelism, or every shard; never more than the shards.
*/}}
{{- define "recsys-batch.parallelism" -}}
{{- $shards := int .Values.batch.shards }}
{{- if kindIs "invalid" .Values.batch.parallelism }}
{{- $shards }}
{{- else }}
{{- min $shards (int .Values.batch.parallelism) }}
{{- end }}
{{- end }}

{{/*
One Hydra override `key=value` for a string value, as one container argument.
Three layers read it, outermost first:
- the kubelet expands `$(VAR)` in args and turns `$$` into `$`: every `$` is doubled;
- Hydra's override grammar: a value of letters, digits and `_-/+.%*@?|:` that does not read as
  a number, a bool or null stays unquoted; any other is single-quoted, with `\'` for a quote
  and the backslashes before a quote or the end doubled;
- OmegaConf, which reads `${...}` as an interpolation: `${` becomes `\${` (and the backslashes
  before it are doubled).
`suffix` (optional) is appended after the escaping, unescaped: a `$(VAR)` for the kubelet to
expand to a value of the plain characters above.
Call with (dict "key" ... "value" ... "suffix" ...).
*/}}
{{- define "recsys-batch.override" -}}
{{- $placeholder := "RECSYSBATCHSUFFIX" }}
{{- $value := toString .value }}
{{- if .suffix }}
{{- $value = printf "%s%s" $value $placeholder }}
{{- end }}
{{- $typed := regexMatch "^(?i:true|false|null|[+-]?(inf|nan)|[+-]?[0-9._]*[0-9][0-9._]*(e[+-]?[0-9_]+)?)$" $value }}
{{- if or $typed (not (regexMatch "^[A-Za-z0-9_/+.%*@?|:-]+$" $value)) }}
{{- $value = regexReplaceAll "(\\\\*)\\$\\{" $value "${1}${1}\\$${" }}
{{- $value = regexReplaceAll "(\\\\+)('|$)" $value "${1}${1}${2}" }}
{{- $value = printf "'%s'" (replace "'" "\\'" $value) }}
{{- end }}
{{- $arg := replace "$" "$$" (printf "%s=%s" .key $value) }}
{{- replace $placeholder (toString .suffix) $arg }}
{{- end }}

{{/*
The output directory of a job: `<mountPath>/<outputDir>`, or with a schedule
`<mountPath>/<outputDir>/<Job name>` (a new one for every scheduled run, the same for every pod
and retry of a run). Returns the Hydra override output_dir=....
*/}}
{{- define "recsys-batch.outputDirArg" -}}
{{- $b := .Values.batch }}
{{- $dir := printf "%s/%s" (trimSuffix "/" $b.data.mountPath) (trimSuffix "/" $b.outputDir) }}
{{- if $b.schedule }}
{{- include "recsys-batch.override" (dict "key" "output_dir" "value" (printf "%s/" $dir) "suffix" "$(JOB_NAME)") }}
{{- else }}
{{- include "recsys-batch.override" (dict "key" "output_dir" "value" $dir) }}
{{- end }}
{{- end }}

{{/*
The names of batch.extraEnv, as a list.
*/}}
{{- define "recsys-batch.extraEnvNames" -}}
{{- $names := list }}
{{- range .Values.batch.extraEnv }}
{{- $names = append $names .name }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/*
The model, checked against what it needs: an MLflow model (models:/...) a tracking URI, a
BentoML tag (no slash, not a .ckpt file) a model store. Either may also come from extraEnv.
*/}}
{{- define "recsys-batch.model" -}}
{{- $b := .Values.batch }}
{{- $model := required "batch.model is required: a BentoML tag (recsys:latest, with batch.bentomlHome), an MLflow model (models:/recsys@champion, with batch.mlflowTrackingUri) or a checkpoint path on the claim" $b.model }}
{{- $env := include "recsys-batch.extraEnvNames" . | fromJsonArray }}
{{- if and $model (hasPrefix "models:" $model) (not $b.mlflowTrackingUri) (not (has "MLFLOW_TRACKING_URI" $env)) }}
{{- fail (printf "batch.model=%s is an MLflow model: set batch.mlflowTrackingUri (e.g. http://mlflow.mlflow:5000, or sqlite:////data/runs/mlflow.db for the training chart's store on the claim) or MLFLOW_TRACKING_URI in batch.extraEnv" $model) }}
{{- end }}
{{- if and $model (not (contains "/" $model)) (not (hasSuffix ".ckpt" $model)) (not $b.bentomlHome) (not (has "BENTOML_HOME" $env)) }}
{{- fail (printf "batch.model=%s is a BentoML tag: set batch.bentomlHome to the model store that holds it (e.g. /data/bentoml on the claim) or BENTOML_HOME in batch.extraEnv" $model) }}
{{- end }}
{{- $model }}
{{- end }}

{{/*
The arguments of recsys-recommend in each pod: its shard is the pod's completion index.
*/}}
{{- define "recsys-batch.args" -}}
{{- $b := .Values.batch }}
{{- $args := list
  (include "recsys-batch.override" (dict "key" "model" "value" (include "recsys-batch.model" .)))
  (include "recsys-batch.outputDirArg" .)
  (include "recsys-batch.override" (dict "key" "users" "value" $b.users))
  (printf "k=%d" (int $b.k))
  (printf "exclude_seen=%t" $b.excludeSeen)
  (printf "workers=%d" (int $b.workers))
  (include "recsys-batch.override" (dict "key" "device" "value" $b.device))
  (include "recsys-batch.override" (dict "key" "retrieval" "value" $b.retrieval))
  (printf "shard=$(JOB_COMPLETION_INDEX)/%d" (int $b.shards)) }}
{{- $args = concat $args $b.extraArgs }}
{{- toYaml $args }}
{{- end }}

{{/*
Requests and limits per pod with `gpusPerPod` NVIDIA GPUs added to both.
*/}}
{{- define "recsys-batch.resources" -}}
{{- $b := .Values.batch }}
{{- $resources := deepCopy ($b.resources | default dict) }}
{{- $gpu := int $b.gpusPerPod }}
{{- if gt $gpu 0 }}
{{- $_ := set $resources "requests" (merge (dict "nvidia.com/gpu" $gpu) ($resources.requests | default dict)) }}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" $gpu) ($resources.limits | default dict)) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/*
The spec of one batch job: the one-off Job's, and the CronJob's jobTemplate.
*/}}
{{- define "recsys-batch.jobSpec" -}}
{{- $b := .Values.batch -}}
{{- $claim := required "batch.data.existingClaim is required: a PersistentVolumeClaim (ReadWriteMany for pods on several nodes) that receives the parts" $b.data.existingClaim -}}
# Pod I scores shard I/<shards>: completion indices 0 .. shards-1.
completionMode: Indexed
completions: {{ $b.shards }}
parallelism: {{ include "recsys-batch.parallelism" . }}
# Retries per shard: a failed shard is retried on its own (its finished parts are kept), and
# one shard's failures never stop the others.
backoffLimitPerIndex: {{ $b.backoffLimitPerIndex }}
# Evictions, preemptions and node drains are retried without counting against that budget.
podFailurePolicy:
  rules:
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{{- if not (kindIs "invalid" $b.activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ $b.activeDeadlineSeconds }}
{{- end }}
{{- if not (kindIs "invalid" $b.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $b.ttlSecondsAfterFinished }}
{{- end }}
template:
  metadata:
    labels:
      {{- include "recsys-batch.labels" . | nindent 6 }}
  spec:
    # Never (not OnFailure): a failed pod stays with its logs, its retry is a new pod that may
    # land on another node, and the per-index backoff and the pod failure policy need it.
    restartPolicy: Never
    serviceAccountName: {{ include "recsys-batch.serviceAccountName" . }}
    # Scoring never talks to the Kubernetes API.
    automountServiceAccountToken: false
    # Service links would inject <SERVICE>_PORT=tcp://... variables that collide with settings.
    enableServiceLinks: false
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.podSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: recommend
        image: {{ include "recsys-batch.image" . | quote }}
        imagePullPolicy: {{ include "recsys-batch.pullPolicy" . }}
        command:
          - recsys-recommend
        # Hydra overrides; the kubelet expands $(JOB_COMPLETION_INDEX) (and $(JOB_NAME)).
        args:
          {{- include "recsys-batch.args" . | nindent 10 }}
        env:
          # The pod's shard. The Job controller sets it too; declared here so that $(...) in
          # args always has it to expand.
          - name: JOB_COMPLETION_INDEX
            valueFrom:
              fieldRef:
                fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
          {{- if $b.schedule }}
          # The scheduled run's Job: the same for all its pods and retries, new for every run.
          - name: JOB_NAME
            valueFrom:
              fieldRef:
                fieldPath: metadata.labels['batch.kubernetes.io/job-name']
          {{- end }}
          # OpenMP threads sleep at barriers instead of spinning (10x slower on busy nodes).
          - name: OMP_WAIT_POLICY
            value: PASSIVE
          # The root filesystem is read-only: caches and config (matplotlib, torch) go to /tmp.
          - name: HOME
            value: /tmp
          - name: BENTOML_DO_NOT_TRACK
            value: "true"
          {{- with $b.mlflowTrackingUri }}
          - name: MLFLOW_TRACKING_URI
            value: {{ . | quote }}
          {{- end }}
          {{- with $b.bentomlHome }}
          - name: BENTOML_HOME
            value: {{ . | quote }}
          {{- end }}
          {{- with $b.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        resources:
          {{- include "recsys-batch.resources" . | nindent 10 }}
        # Relative paths (model, users, data.processed_dir, Hydra's logs/) land on the claim.
        workingDir: {{ $b.data.mountPath }}
        {{- with .Values.securityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          - name: data
            mountPath: {{ $b.data.mountPath }}
          - name: tmp
            mountPath: /tmp
          - name: dshm
            mountPath: /dev/shm
    volumes:
      - name: data
        persistentVolumeClaim:
          claimName: {{ $claim }}
      - name: tmp
        emptyDir: {}
      # The runtime's default /dev/shm is 64 MiB.
      - name: dshm
        emptyDir:
          medium: Memory
          sizeLimit: {{ $b.shmSize }}
    {{- with $b.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $b.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $b.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
