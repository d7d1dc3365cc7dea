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
The serving pods only: Service, PDB and NetworkPolicy select them, never the `helm test` pod.
*/}}
{{- define "recsys.serverSelectorLabels" -}}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/component: server
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
Values the chart refuses with a message the schema could not give.
*/}}
{{- define "recsys.checkValues" -}}
{{- if not (kindIs "invalid" .Values.training) }}
{{- fail "training moved to its own chart, deploy/helm/recsys-training, with the same training.* values: `helm install train-1 deploy/helm/recsys-training --set training.image.repository=... --set training.data.existingClaim=...`; drop training from this chart's values" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling.enabled needs resources.requests.cpu: the HPA's utilization target is a share of it" }}
{{- end }}
{{- end }}

{{/*
The `helm test` pod's securityContext: podSecurityContext with uid/gid 65534 (nobody; busybox has
no user of its own) in place of each id it sets, so dropping an id (OpenShift) drops it here too.
*/}}
{{- define "recsys.testPodSecurityContext" -}}
{{- $context := deepCopy (.Values.podSecurityContext | default dict) }}
{{- range $key := list "runAsUser" "runAsGroup" "fsGroup" }}
{{- if hasKey $context $key }}
{{- $_ := set $context $key 65534 }}
{{- end }}
{{- end }}
{{- with $context }}
{{- toYaml . }}
{{- end }}
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
