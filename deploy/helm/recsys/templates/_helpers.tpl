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
The challenger's pods. A component of their own keeps them out of the stable Service's and
Deployment's selectors, which are immutable (Deployment) or would send the stable share of traffic
to the canary (Service).
*/}}
{{- define "recsys.canarySelectorLabels" -}}
{{ include "recsys.selectorLabels" . }}
app.kubernetes.io/component: server-canary
{{- end }}

{{/*
The name of the canary's Deployment, Service, PDB and Ingress: the full name plus -canary, cut so
that the whole stays a 63-character DNS label.
*/}}
{{- define "recsys.canaryFullname" -}}
{{- printf "%s-canary" (include "recsys.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/*
Both tracks (stable and canary) as a LabelSelector body: their pods for the NetworkPolicy, their
Services for the ServiceMonitor. Constant whether the canary runs or not, so toggling it never
touches them.
*/}}
{{- define "recsys.servingSelector" -}}
matchLabels:
  {{- include "recsys.selectorLabels" . | nindent 2 }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values:
      - server
      - server-canary
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
The canary's image: each of repository and tag defaults to the stable image's.
*/}}
{{- define "recsys.canaryImage" -}}
{{- $repository := .Values.canary.image.repository | default .Values.image.repository }}
{{- $tag := .Values.canary.image.tag | toString | default (.Values.image.tag | toString) | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
The ConfigMap holding the Grafana dashboard.
*/}}
{{- define "recsys.dashboardName" -}}
{{- printf "%s-dashboard" (include "recsys.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}

{{/*
The claim holding the feedback event log, when it lives on one.
*/}}
{{- define "recsys.feedbackClaim" -}}
{{- .Values.feedback.persistence.existingClaim | default (printf "%s-feedback" (include "recsys.fullname" . | trunc 54 | trimSuffix "-")) }}
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
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs, the Gateway(s) the route attaches to, e.g. --set 'httpRoute.parentRefs[0].name=web' --set 'httpRoute.parentRefs[0].namespace=gateway-system'" }}
{{- end }}
{{- if .Values.canary.enabled }}
{{- if and (eq .Values.canary.routing "gatewayapi") (not .Values.httpRoute.enabled) }}
{{- fail "canary.routing=gatewayapi splits the traffic of the chart's HTTPRoute: set httpRoute.enabled=true and httpRoute.parentRefs (or canary.routing=nginx with ingress.enabled=true)" }}
{{- end }}
{{- if and (eq .Values.canary.routing "nginx") (not .Values.ingress.enabled) }}
{{- fail "canary.routing=nginx adds an NGINX canary Ingress beside the chart's Ingress, on the same hosts and paths: set ingress.enabled=true and ingress.hosts (or canary.routing=gatewayapi with httpRoute.enabled=true)" }}
{{- end }}
{{- end }}
{{- include "recsys.checkFeedbackDir" . }}
{{- end }}

{{/*
The feedback volume must not hide the Bento (its models) or share a mount point with the pod's
other volumes: Kubernetes refuses two mounts at one path only when the pod is created.
*/}}
{{- define "recsys.checkFeedbackDir" -}}
{{- $dir := printf "%s/" (trimSuffix "/" .Values.feedback.dir) }}
{{- $bento := printf "%s/" (include "recsys.bentoPath" .) }}
{{- if or (hasPrefix $dir $bento) (hasPrefix $bento $dir) (has $dir (list "/tmp/" (printf "%s/" (include "recsys.bentomlHome" .)))) }}
{{- fail (printf "feedback.dir=%s would hide the Bento at %s or another volume of the pod (/tmp, %s): choose a directory of its own, e.g. /var/lib/recsys/feedback" .Values.feedback.dir (include "recsys.bentoPath" .) (include "recsys.bentomlHome" .)) }}
{{- end }}
{{- end }}

{{/*
Where `bentoml containerize` puts the Bento and its models (BENTO_PATH in the image).
*/}}
{{- define "recsys.bentoPath" -}}
/home/bentoml/bento
{{- end }}

{{/*
BENTOML_HOME of the serving pods: an emptyDir (see the Deployment for why it moves).
*/}}
{{- define "recsys.bentomlHome" -}}
/var/lib/bentoml
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

{{/*
The Ingress rules of ingress.hosts, to one Service's port http.
Call with (dict "root" $ "service" <Service name>).
*/}}
{{- define "recsys.ingressRules" -}}
{{- $service := .service }}
{{- range .root.Values.ingress.hosts }}
- http:
    paths:
      {{- range .paths }}
      - path: {{ .path | quote }}
        pathType: {{ .pathType | default "Prefix" }}
        backend:
          service:
            name: {{ $service }}
            port:
              name: http
      {{- end }}
  {{- with .host }}
  host: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end }}
