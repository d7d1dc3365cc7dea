{{/*
A serving Deployment: the stable track, or the canary (the challenger) beside it. The two differ in
name, selector, image, model, replicas, resources and extra env only, so both get the same probes,
security contexts, volumes and scheduling.
Call with (dict "root" $ "track" "stable"|"canary").
*/}}
{{- define "recsys.deployment" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $canary := eq .track "canary" }}
{{- $bentomlHome := include "recsys.bentomlHome" $root }}
{{- $component := ternary "server-canary" "server" $canary }}
{{- $model := ternary $values.canary.model $values.model $canary }}
{{- $resources := ternary ($values.canary.resources | default $values.resources) $values.resources $canary }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ ternary (include "recsys.canaryFullname" $root) (include "recsys.fullname" $root) $canary }}
  labels:
    {{- include "recsys.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
    recsys.io/track: {{ .track }}
spec:
  {{- if $canary }}
  # No autoscaler: the canary takes a fixed share of the traffic (canary.weight).
  replicas: {{ $values.canary.replicaCount }}
  {{- else if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  # Immutable: the stable selector is the one every installed release has.
  selector:
    matchLabels:
      {{- if $canary }}
      {{- include "recsys.canarySelectorLabels" $root | nindent 6 }}
      {{- else }}
      {{- include "recsys.serverSelectorLabels" $root | nindent 6 }}
      {{- end }}
  template:
    metadata:
      {{- with $values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      labels:
        {{- include "recsys.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ $component }}
        recsys.io/track: {{ .track }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      serviceAccountName: {{ include "recsys.serviceAccountName" $root }}
      # The service never talks to the Kubernetes API.
      automountServiceAccountToken: false
      # Service links would inject <SERVICE>_PORT=tcp://... variables (RECSYS_PORT for a
      # Service named recsys, BENTOML_PORT for one named bentoml) that collide with settings.
      enableServiceLinks: false
      # Time for BentoML to finish the requests in flight and for the feedback log to be flushed
      # after SIGTERM.
      terminationGracePeriodSeconds: {{ int64 $values.terminationGracePeriodSeconds }}
      {{- with $values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $root.Chart.Name }}
          image: {{ ternary (include "recsys.canaryImage" $root) (include "recsys.image" $root) $canary | quote }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          # No command or args: the Bento's entrypoint runs `bentoml serve $BENTO_PATH`
          # (BENTO_PATH={{ include "recsys.bentoPath" $root }}, the bundled models included) on port 3000.
          ports:
            - name: http
              containerPort: 3000
              protocol: TCP
          env:
            # The image sets BENTOML_HOME=/home/bentoml/, the parent of the Bento: a volume
            # there would hide the Bento and its models, and the read-only root filesystem
            # forbids writing there. The models load from the Bento itself, so the home
            # (Prometheus multiprocess files, temporary stores) moves to its own emptyDir.
            - name: BENTOML_HOME
              value: {{ $bentomlHome }}
            # OpenMP threads sleep at barriers instead of spinning: spinning torch threads run
            # up to 10x slower on a busy node.
            - name: OMP_WAIT_POLICY
              value: PASSIVE
            # No usage reporting: the NetworkPolicy lets the pods reach DNS only.
            - name: BENTOML_DO_NOT_TRACK
              value: "true"
            # POST /feedback appends events here, one file per host and process.
            - name: RECSYS_FEEDBACK_DIR
              value: {{ $values.feedback.dir | quote }}
            {{- with $values.feedback.maxBytes | toString }}
            - name: RECSYS_FEEDBACK_MAX_BYTES
              value: {{ int64 $values.feedback.maxBytes | toString | quote }}
            {{- end }}
            {{- if gt (int $values.gpu) 0 }}
            # Score on the GPU, and fail at start-up if the image's torch cannot see it.
            - name: RECSYS_DEVICE
              value: cuda
            {{- end }}
            {{- with $values.torchThreads | toString }}
            - name: RECSYS_TORCH_THREADS
              value: {{ . | quote }}
            {{- end }}
            {{- with $model }}
            - name: RECSYS_MODEL
              value: {{ . | quote }}
            {{- end }}
            {{- with include "recsys.extraEnv" (dict "root" $root "canary" $canary) }}
            {{- . | nindent 12 }}
            {{- end }}
          # Startup (model load) and readiness both ask /readyz; liveness asks /livez.
          startupProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $values.probes.startup | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $values.probes.readiness | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /livez
              port: http
            {{- toYaml $values.probes.liveness | nindent 12 }}
          resources:
            {{- include "recsys.resources" (dict "resources" $resources "gpu" $values.gpu) | nindent 12 }}
          {{- with $values.securityContext }}
          securityContext:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: bentoml-home
              mountPath: {{ $bentomlHome }}
            # The one writable place besides the emptyDirs above: the root filesystem stays
            # read-only.
            - name: feedback
              mountPath: {{ $values.feedback.dir }}
      volumes:
        - name: tmp
          emptyDir: {}
        - name: bentoml-home
          emptyDir: {}
        - name: feedback
          {{- if $values.feedback.persistence.enabled }}
          persistentVolumeClaim:
            claimName: {{ include "recsys.feedbackClaim" $root }}
          {{- else }}
          # Lost with the pod: set feedback.persistence.enabled to keep the events.
          emptyDir: {}
          {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/*
extraEnv, and on the canary canary.extraEnv over it: a variable both set takes the canary's
value (listed once, so no definition hides another).
Call with (dict "root" $ "canary" <bool>).
*/}}
{{- define "recsys.extraEnv" -}}
{{- $values := .root.Values }}
{{- $override := ternary $values.canary.extraEnv (list) .canary }}
{{- $names := list }}
{{- range $override }}
{{- $names = append $names .name }}
{{- end }}
{{- $env := list }}
{{- range $values.extraEnv }}
{{- if not (has .name $names) }}
{{- $env = append $env . }}
{{- end }}
{{- end }}
{{- with concat $env $override }}
{{- toYaml . }}
{{- end }}
{{- end }}
