{{/*
Chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "kombu-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object: fullnameOverride, else the release name (one service per release).
*/}}
{{- define "kombu-worker.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kombu-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "kombu-worker.labels" -}}
helm.sh/chart: {{ include "kombu-worker.chart" . }}
{{ include "kombu-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: worker
{{- end }}

{{/*
Selector labels (stable across upgrades).
*/}}
{{- define "kombu-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kombu-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kombu-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kombu-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kombu-worker.image" -}}
{{- $repo := required "image.repository is required (--set image.repository=my-service)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{- define "kombu-worker.queueURL" -}}
{{- required "queues.input is required: the SQS queue URL this service consumes (--set queues.input=$QUEUE_URL)" .Values.queues.input }}
{{- end }}

{{- define "kombu-worker.scaledJobMode" -}}
{{- if and .Values.keda.enabled (eq .Values.keda.mode "scaledJob") }}true{{ end }}
{{- end }}

{{/*
Name of the Secret holding DB_DSN, or "" when there is none.
*/}}
{{- define "kombu-worker.dbSecretName" -}}
{{- if and .Values.db.existingSecret .Values.db.dsn }}
{{- fail "set db.existingSecret or db.dsn, not both" }}
{{- end }}
{{- if .Values.db.existingSecret }}
{{- .Values.db.existingSecret }}
{{- else if .Values.db.dsn }}
{{- printf "%s-db" (include "kombu-worker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Flatten nested maps into dotted keys: {nvidia: {com/gpu: 1}} -> "nvidia.com/gpu": 1.
`--set resources.limits.nvidia.com/gpu=1` (unescaped dots) nests like that; a resource
quantity is never a map, so joining the keys back is unambiguous.
Input: dict "prefix" <string> "map" <map>. Output: YAML lines "key": value.
*/}}
{{- define "kombu-worker.flattenKeys" -}}
{{- $prefix := .prefix }}
{{- range $k, $v := .map }}
{{- $key := $k }}
{{- if $prefix }}{{ $key = printf "%s.%s" $prefix $k }}{{ end }}
{{- if kindIs "map" $v }}
{{ include "kombu-worker.flattenKeys" (dict "prefix" $key "map" $v) }}
{{- else }}
{{ $key | quote }}: {{ toJson $v }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Resources with limits/requests flattened (see flattenKeys). Returns YAML (a map).
*/}}
{{- define "kombu-worker.resources" -}}
{{- $out := dict }}
{{- range $section, $v := (.Values.resources | default dict) }}
{{- if and (has $section (list "limits" "requests")) (kindIs "map" $v) }}
{{- $_ := set $out $section (include "kombu-worker.flattenKeys" (dict "prefix" "" "map" $v) | fromYaml) }}
{{- else }}
{{- $_ := set $out $section $v }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
"true" when the pod asks for an NVIDIA GPU (in limits or requests).
*/}}
{{- define "kombu-worker.wantsGpu" -}}
{{- $res := include "kombu-worker.resources" . | fromYaml }}
{{- $gpu := false }}
{{- range $section := list "limits" "requests" }}
{{- $m := get $res $section | default dict }}
{{- if hasKey $m "nvidia.com/gpu" }}
{{- if ne (toString (get $m "nvidia.com/gpu")) "0" }}{{ $gpu = true }}{{ end }}
{{- end }}
{{- end }}
{{- if $gpu }}true{{ end }}
{{- end }}

{{/*
An httpGet probe from values.probes.<name>.
*/}}
{{- define "kombu-worker.probe" -}}
httpGet:
  path: {{ .path }}
  port: http
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $ $k }}
{{- if not (kindIs "invalid" (get $ $k)) }}
{{ $k }}: {{ get $ $k }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The worker container's environment.
*/}}
{{- define "kombu-worker.env" -}}
{{- $v := .Values }}
{{- $cfg := $v.worker.config | default dict -}}
- name: QUEUE_URL
  value: {{ include "kombu-worker.queueURL" . | quote }}
{{- with $v.queues.next }}
- name: NEXT_QUEUE_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.queues.deadLetter }}
- name: DLQ_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.bucket }}
- name: BUCKET
  value: {{ . | quote }}
{{- end }}
- name: BROKER_URL
  value: {{ $v.brokerUrl | quote }}
{{- with $v.workerConfig }}
- name: WORKER_CONFIG
  value: {{ . | quote }}
{{- end }}
{{- with $v.aws.region }}
- name: AWS_REGION
  value: {{ . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- with (include "kombu-worker.dbSecretName" .) }}
- name: DB_DSN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.db.secretKey }}
{{- end }}
- name: KOMBU_WORKER_HEALTH_PORT
  value: {{ $v.worker.healthPort | quote }}
- name: KOMBU_WORKER_SHUTDOWN_GRACE_SECONDS
  value: {{ $v.worker.shutdownGraceSeconds | quote }}
{{- if not (kindIs "invalid" $v.worker.concurrency) }}
- name: KOMBU_WORKER_CONCURRENCY
  value: {{ $v.worker.concurrency | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.worker.visibilityTimeout) }}
- name: KOMBU_WORKER_VISIBILITY_TIMEOUT
  value: {{ $v.worker.visibilityTimeout | quote }}
{{- end }}
{{- range $key, $name := dict "softTimeLimitSeconds" "soft_time_limit_seconds" "timeLimitSeconds" "time_limit_seconds" "maxTasksPerWorker" "max_tasks_per_worker" "maxMemoryMb" "max_memory_mb" "rateLimit" "rate_limit" }}
{{- $val := index $v.worker $key }}
{{- if and (not (kindIs "invalid" $val)) (not (hasKey $cfg $name)) }}
- name: {{ printf "KOMBU_WORKER_%s" ($name | upper) }}
  value: {{ $val | quote }}
{{- end }}
{{- end }}
{{- if $v.modelCache.enabled }}
{{- range $var := list "HF_HOME" "TORCH_HOME" "XDG_CACHE_HOME" }}
- name: {{ $var }}
  value: {{ printf "%s/%s" $v.modelCache.mountPath ($var | lower | replace "_home" "" | replace "_" "-") | quote }}
{{- end }}
{{- end }}
{{- if include "kombu-worker.scaledJobMode" . }}
{{- $n := int $v.keda.scaledJob.maxMessages }}
{{- if not (hasKey $cfg "prefetch") }}
- name: KOMBU_WORKER_PREFETCH
  value: {{ $n | quote }}
{{- end }}
{{- if not (hasKey $cfg "receive_batch_size") }}
- name: KOMBU_WORKER_RECEIVE_BATCH_SIZE
  value: {{ min $n 10 | quote }}
{{- end }}
{{- end }}
{{- range $key := keys $cfg | sortAlpha }}
{{- $val := get $cfg $key }}
- name: {{ printf "KOMBU_WORKER_%s" ($key | upper) }}
  value: {{ if kindIs "string" $val }}{{ $val | quote }}{{ else }}{{ toJson $val | quote }}{{ end }}
{{- end }}
{{- with $v.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by the Deployment and the ScaledJob's Job template.
Call with dict "ctx" $ "args" <list of extra worker args> "restartPolicy" <string or "">.
*/}}
{{- define "kombu-worker.podTemplate" -}}
{{- $root := .ctx }}
{{- $v := $root.Values }}
{{- $wantsGpu := include "kombu-worker.wantsGpu" $root -}}
metadata:
  labels:
    {{- include "kombu-worker.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: worker
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if and (not $v.db.existingSecret) $v.db.dsn }}
    checksum/db-secret: {{ $v.db.dsn | sha256sum }}
    {{- end }}
    {{- if $v.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.worker.healthPort | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- if and (include "kombu-worker.scaledJobMode" $root) (not $v.keda.scaledJob.safeToEvict) }}
    cluster-autoscaler.kubernetes.io/safe-to-evict: "false"
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "kombu-worker.serviceAccountName" $root }}
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ add (int $v.worker.shutdownGraceSeconds) (int $v.worker.terminationMarginSeconds) }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- with $v.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: worker
      image: {{ include "kombu-worker.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        {{- toYaml $v.command | nindent 8 }}
      args:
        - --hooks
        - {{ required "hooks is required: the module:Class of your hooks (--set hooks=service.hooks:ServiceHooks)" $v.hooks | quote }}
        {{- range .args }}
        - {{ . | quote }}
        {{- end }}
        {{- range $v.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ $v.worker.healthPort }}
          protocol: TCP
      env:
        {{- include "kombu-worker.env" $root | nindent 8 }}
      {{- with $v.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.probes.startup.enabled }}
      startupProbe:
        {{- include "kombu-worker.probe" $v.probes.startup | nindent 8 }}
      {{- end }}
      {{- if $v.probes.liveness.enabled }}
      livenessProbe:
        {{- include "kombu-worker.probe" $v.probes.liveness | nindent 8 }}
      {{- end }}
      {{- if $v.probes.readiness.enabled }}
      readinessProbe:
        {{- include "kombu-worker.probe" $v.probes.readiness | nindent 8 }}
      {{- end }}
      {{- with (include "kombu-worker.resources" $root | fromYaml) }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $v.extraVolumeMounts $v.modelCache.enabled }}
      volumeMounts:
        {{- if $v.modelCache.enabled }}
        - name: model-cache
          mountPath: {{ $v.modelCache.mountPath }}
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
  {{- if or $v.extraVolumes $v.modelCache.enabled }}
  volumes:
    {{- if $v.modelCache.enabled }}
    {{- $cache := dict }}
    {{- with $v.modelCache.sizeLimit }}{{ $_ := set $cache "sizeLimit" . }}{{ end }}
    {{- with $v.modelCache.medium }}{{ $_ := set $cache "medium" . }}{{ end }}
    - name: model-cache
      emptyDir: {{ toJson $cache }}
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or $v.tolerations (and $wantsGpu $v.gpuToleration) }}
  tolerations:
    {{- with $v.tolerations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- if and $wantsGpu $v.gpuToleration }}
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
    {{- end }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
The aws-sqs-queue trigger shared by the ScaledObject and the ScaledJob.
*/}}
{{- define "kombu-worker.sqsTrigger" -}}
{{- $v := .Values }}
{{- $k := $v.keda }}
{{- $queueLength := $k.queueLength }}
{{- if include "kombu-worker.scaledJobMode" . }}{{ $queueLength = $k.scaledJob.maxMessages }}{{ end -}}
- type: aws-sqs-queue
  {{- /* KEDA >= 2.13: the identity lives in a TriggerAuthentication, never in the trigger's
  metadata (`identityOwner: operator` there is deprecated since 2.13). */}}
  authenticationRef:
    name: {{ include "kombu-worker.fullname" . }}
  metadata:
    queueURL: {{ $k.queueURL | default (include "kombu-worker.queueURL" .) | quote }}
    queueLength: {{ $queueLength | quote }}
    activationQueueLength: {{ $k.activationQueueLength | quote }}
    awsRegion: {{ required "aws.region is required for the KEDA trigger" $v.aws.region | quote }}
    scaleOnInFlight: {{ $k.scaleOnInFlight | quote }}
    scaleOnDelayed: {{ $k.scaleOnDelayed | quote }}
{{- end }}

{{/*
The ServiceAccount's IRSA role ARN as the chart renders it ("" when the chart creates no
ServiceAccount, or creates one without the eks.amazonaws.com/role-arn annotation).
*/}}
{{- define "kombu-worker.serviceAccountRole" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.roleArn | default (get (.Values.serviceAccount.annotations | default dict) "eks.amazonaws.com/role-arn") }}
{{- end }}
{{- end }}

{{/*
Whose AWS identity KEDA uses to read the queue: "keda" (the KEDA operator's own), "workload"
(the worker ServiceAccount's IRSA role, read by KEDA from its eks.amazonaws.com/role-arn
annotation), "role" (keda.podIdentity.roleArn, assumed by KEDA) or "" (identityOwner left
unset: KEDA's own default, keda). `auto` picks workload only when the chart's ServiceAccount
carries a role: KEDA fails with "annotation 'eks.amazonaws.com/role-arn' not found" otherwise.
*/}}
{{- define "kombu-worker.kedaIdentity" -}}
{{- $p := .Values.keda.podIdentity }}
{{- $role := include "kombu-worker.serviceAccountRole" . }}
{{- if eq .Values.keda.authentication "operator" }}keda
{{- else if $p.roleArn }}role
{{- else if eq $p.identityOwner "auto" }}{{ if $role }}workload{{ else }}keda{{ end }}
{{- else if eq $p.identityOwner "workload" }}
{{- if and .Values.serviceAccount.create (not $role) }}
{{- fail "keda.podIdentity.identityOwner=workload needs serviceAccount.roleArn (KEDA reads the IRSA role from the ServiceAccount's eks.amazonaws.com/role-arn annotation): set it, or use identityOwner=keda" }}
{{- end }}workload
{{- else }}{{ $p.identityOwner }}
{{- end }}
{{- end }}

{{/*
Refuse, in one line each, values that render but that Kubernetes or KEDA rejects on apply.
*/}}
{{- define "kombu-worker.validate" -}}
{{- $k := .Values.keda }}
{{- if and $k.enabled (gt (int $k.minReplicaCount) (int $k.maxReplicaCount)) }}
{{- fail (printf "keda.minReplicaCount (%d) must not exceed keda.maxReplicaCount (%d): KEDA rejects the %s" (int $k.minReplicaCount) (int $k.maxReplicaCount) $k.mode) }}
{{- end }}
{{- $name := default .Release.Name .Values.fullnameOverride }}
{{- if and $k.enabled (not (include "kombu-worker.scaledJobMode" .)) (gt (len $name) 54) }}
{{- fail (printf "fullnameOverride %q is %d characters; at most 54 fit, because KEDA names the HPA keda-hpa-<name> and Kubernetes names are at most 63" $name (len $name)) }}
{{- end }}
{{- $res := include "kombu-worker.resources" . | fromYaml }}
{{- $requests := get $res "requests" | default dict }}
{{- $limits := get $res "limits" | default dict }}
{{- range $gpu := list "nvidia.com/gpu" }}
{{- if hasKey $requests $gpu }}
{{- if not (hasKey $limits $gpu) }}
{{- fail (printf "resources.requests.%s is set without resources.limits.%s: Kubernetes requires a GPU in limits (requests may be left out, and then equal limits)" $gpu $gpu) }}
{{- else if ne (toString (get $requests $gpu)) (toString (get $limits $gpu)) }}
{{- fail (printf "resources.requests.%s (%v) differs from resources.limits.%s (%v): Kubernetes requires them equal (or leave requests out)" $gpu (get $requests $gpu) $gpu (get $limits $gpu)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
