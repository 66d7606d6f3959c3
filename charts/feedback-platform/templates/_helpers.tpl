{{/*
Helpers of the feedback-platform chart. Every helper is prefixed with the chart name so that
it cannot clash with a parent chart's (the prometheus-community charts' convention).
Component helpers take (dict "root" $ "component" "<ingest|worker|qa-sync|vllm|test>").
*/}}

{{- define "feedback-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "feedback-platform.fullname" -}}
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

{{- define "feedback-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <fullname>-<component>, kept within the 63 characters of a DNS label. */}}
{{- define "feedback-platform.componentName" -}}
{{- $base := include "feedback-platform.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .component }}
{{- end }}

{{/*
Selector labels: name, instance and component only. They are immutable on a Deployment, so
nothing that changes between releases (chart version, user labels) may ever be part of them.
*/}}
{{- define "feedback-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "feedback-platform.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object labels: selector labels win over commonLabels with the same key. */}}
{{- define "feedback-platform.labels" -}}
{{- $fixed := dict
  "helm.sh/chart" (include "feedback-platform.chart" .root)
  "app.kubernetes.io/version" .root.Chart.AppVersion
  "app.kubernetes.io/managed-by" .root.Release.Service
  "app.kubernetes.io/part-of" (include "feedback-platform.name" .root) }}
{{- $selector := include "feedback-platform.selectorLabels" . | fromYaml }}
{{- toYaml (merge $selector $fixed .root.Values.commonLabels) }}
{{- end }}

{{/* Pod template labels: selector labels, then commonLabels and the component's podLabels. */}}
{{- define "feedback-platform.podLabels" -}}
{{- $selector := include "feedback-platform.selectorLabels" . | fromYaml }}
{{- toYaml (merge $selector (.podLabels | default dict) .root.Values.commonLabels) }}
{{- end }}

{{- define "feedback-platform.serviceAccountName" -}}
{{- if .values.serviceAccount.create }}
{{- default (include "feedback-platform.componentName" .) .values.serviceAccount.name }}
{{- else }}
{{- default "default" .values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret a component reads its secret variables from (never created by the chart). */}}
{{- define "feedback-platform.secretName" -}}
{{- default (include "feedback-platform.componentName" .) .values.secret.name }}
{{- end }}

{{/*
Image reference: [registry/]repository:tag[@digest]; the tag defaults to the appVersion.
Call with (dict "root" $ "image" .Values.x.image "registry" "<prefix or empty>").
*/}}
{{- define "feedback-platform.image" -}}
{{- $repository := .image.repository }}
{{- with .registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- $reference := printf "%s:%s" $repository (toString (.image.tag | default .root.Chart.AppVersion)) }}
{{- with .image.digest }}
{{- $reference = printf "%s@%s" $reference . }}
{{- end }}
{{- $reference }}
{{- end }}

{{/* One env entry read from a Secret key, named as the key unless "name" is given.
(dict "secret" name "key" KEY "optional" bool ["name" VARIABLE]) */}}
{{- define "feedback-platform.secretEnv" -}}
- name: {{ .name | default .key }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/*
OpenTelemetry: the SDK's standard variables from the one `otel` block. The pod's identity
comes from the downward API and is referenced with $(VAR), which Kubernetes expands only for
variables defined earlier in the same list.
(dict "root" $ "serviceName" "...")
*/}}
{{- define "feedback-platform.otelEnv" -}}
{{- $otel := .root.Values.otel -}}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
{{- if $otel.enabled }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "otel.endpoint is required when otel.enabled is true" $otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $otel.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $otel.samplerArg | quote }}
{{- $attributes := list
  (printf "service.namespace=%s" (include "feedback-platform.name" .root))
  (printf "service.version=%s" .root.Chart.AppVersion)
  "k8s.pod.name=$(K8S_POD_NAME)"
  "k8s.namespace.name=$(K8S_NAMESPACE_NAME)"
  "k8s.node.name=$(K8S_NODE_NAME)" }}
{{- range $key, $value := $otel.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key (toString $value)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- with $otel.headersSecret.name }}
{{ include "feedback-platform.secretEnv" (dict "secret" . "key" $otel.headersSecret.key) }}
{{- end }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- end }}

{{/* The pod-level settings every workload shares. (dict "root" $ "values" .Values.x ...) */}}
{{- define "feedback-platform.podSpecCommon" -}}
serviceAccountName: {{ include "feedback-platform.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Where the worker sends prompts: the in-chart vLLM Service or the external URL. */}}
{{- define "feedback-platform.llmBaseUrl" -}}
{{- if .Values.vllm.enabled }}
{{- printf "http://%s:%d/v1" (include "feedback-platform.componentName" (dict "root" . "component" "vllm")) (int .Values.vllm.port) }}
{{- else }}
{{- required "worker.llm.externalBaseUrl is required when vllm.enabled is false" .Values.worker.llm.externalBaseUrl }}
{{- end }}
{{- end }}

{{/* vLLM's headless Service: every ready replica's address (LLM_REPLICAS). */}}
{{- define "feedback-platform.vllm.replicasService" -}}
{{- printf "%s-replicas" (include "feedback-platform.componentName" (dict "root" . "component" "vllm")) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "feedback-platform.llmModel" -}}
{{- if .Values.vllm.enabled }}
{{- .Values.vllm.servedModelName }}
{{- else }}
{{- required "worker.llm.model is required when vllm.enabled is false" .Values.worker.llm.model }}
{{- end }}
{{- end }}

{{/*
The worker's grace period after SIGTERM: every in-flight request may still need its whole LLM
budget (timeout × attempts) before the drain window closes; the margin covers delivery and
the final SQS delete. Kubernetes kills the pod at this deadline, so it must be above the sum.
*/}}
{{- define "feedback-platform.worker.terminationGracePeriodSeconds" -}}
{{- $worker := .Values.worker }}
{{- /* With the LLM gate the client never retries: one attempt per call. */}}
{{- $attempts := ternary 1 (add1 (int $worker.llm.maxRetries)) $worker.llm.gate.enabled }}
{{- $llmBudget := mul (int $worker.llm.timeoutSeconds) $attempts }}
{{- add $llmBudget (int $worker.drainGraceSeconds) (int $worker.terminationMarginSeconds) }}
{{- end }}

{{/*
vLLM's grace period after SIGTERM. vLLM 0.32's HTTP server waits for the requests in flight
before it exits: a call still generating may finish (its GPU work is not thrown away), and one
that hangs on a dead engine is ended by the worker's LLM timeout (its gate closes, the message
waits and is tried again) before the kill cuts it. At 60 s, equal to that timeout, the two raced.
*/}}
{{- define "feedback-platform.vllm.terminationGracePeriodSeconds" -}}
{{- add (int .Values.worker.llm.timeoutSeconds) (int .Values.worker.terminationMarginSeconds) }}
{{- end }}

{{/* KEDA's target queue length per pod: worker.concurrency unless set. */}}
{{- define "feedback-platform.worker.queueLength" -}}
{{- .Values.worker.autoscaling.queueLength | default .Values.worker.concurrency | int }}
{{- end }}

{{/*
Worker pods one ready vLLM replica can keep busy: its running batch (vllm.maxNumSeqs) over the
calls one pod holds (worker.concurrency), unless worker.autoscaling.llmCap.podsPerLlmReplica
is set. More would only queue inside vLLM.
*/}}
{{- define "feedback-platform.worker.podsPerLlmReplica" -}}
{{- $set := int .Values.worker.autoscaling.llmCap.podsPerLlmReplica }}
{{- if $set }}{{ $set }}{{ else }}{{ div (add (int .Values.vllm.maxNumSeqs) (sub (int .Values.worker.concurrency) 1)) (int .Values.worker.concurrency) }}{{ end }}
{{- end }}

{{/*
The worker's KEDA maxReplicaCount: worker.autoscaling.maxReplicas, or with 0 the pods the most
vLLM replicas keep busy (their count × podsPerLlmReplica). A set cap below that would leave
vLLM's batches short at the burst's peak, so it fails instead.
*/}}
{{- define "feedback-platform.worker.maxReplicas" -}}
{{- $set := int .Values.worker.autoscaling.maxReplicas }}
{{- if .Values.vllm.enabled }}
{{- $vllm := .Values.vllm }}
{{- $llmReplicas := ternary (int $vllm.autoscaling.maxReplicas) (int $vllm.replicaCount) $vllm.autoscaling.enabled }}
{{- $perReplica := include "feedback-platform.worker.podsPerLlmReplica" . | int }}
{{- $needed := mul $llmReplicas $perReplica }}
{{- if not $set }}{{ $needed }}
{{- else if lt $set $needed }}
{{- fail (printf "worker.autoscaling.maxReplicas %d starves vLLM: its %d replica(s) need %d worker pods (%d each, worker.autoscaling.llmCap.podsPerLlmReplica); set at least %d, or 0 to derive it" $set $llmReplicas $needed $perReplica $needed) }}
{{- else }}{{ $set }}{{ end }}
{{- else }}
{{- if not $set }}{{ fail "worker.autoscaling.maxReplicas is required without the in-release vLLM (vllm.enabled false): 0 derives it from vLLM's replicas" }}{{ end }}
{{- $set }}
{{- end }}
{{- end }}

{{/* NetworkPolicy "from" peers of the ingress controller (a YAML list, or nothing). */}}
{{- define "feedback-platform.ingressControllerPeers" -}}
{{- $controller := .Values.networkPolicy.ingressController }}
{{- $peers := list }}
{{- if or $controller.namespaceSelector $controller.podSelector }}
{{- $peer := dict }}
{{- with $controller.namespaceSelector }}{{ $_ := set $peer "namespaceSelector" . }}{{ end }}
{{- with $controller.podSelector }}{{ $_ := set $peer "podSelector" . }}{{ end }}
{{- $peers = append $peers $peer }}
{{- end }}
{{- range $controller.ipBlocks }}
{{- $peers = append $peers (dict "ipBlock" (dict "cidr" .)) }}
{{- end }}
{{- with $peers }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* NetworkPolicy ingress rule admitting the monitoring peers to a metrics port. */}}
{{- define "feedback-platform.monitoringRule" -}}
{{- $monitoring := .root.Values.networkPolicy.monitoring }}
{{- $peer := dict "podSelector" ($monitoring.podSelector | default dict) }}
{{- with $monitoring.namespaceSelector }}{{ $_ := set $peer "namespaceSelector" . }}{{ end }}
{{- $rule := dict "from" (list $peer) "ports" (list (dict "protocol" "TCP" "port" (int .port))) }}
{{- toYaml (list $rule) }}
{{- end }}

{{/* A ServiceMonitor for one component's Service. (dict "root" $ "component" c "port" name "path" p) */}}
{{- define "feedback-platform.serviceMonitor" -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "feedback-platform.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- merge (include "feedback-platform.labels" . | fromYaml) .root.Values.serviceMonitor.labels | toYaml | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- include "feedback-platform.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: {{ .port }}
      path: {{ .path }}
      interval: {{ .root.Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .root.Values.serviceMonitor.scrapeTimeout }}
{{- end }}

{{/* An Ingress to one component's Service. (dict "root" $ "component" c "ingress" v "servicePort" p) */}}
{{- define "feedback-platform.ingress" -}}
{{- $ingress := .ingress }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "feedback-platform.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "feedback-platform.labels" . | nindent 4 }}
  {{- with $ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with $ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    - http:
        paths:
          - path: {{ $ingress.path }}
            pathType: {{ $ingress.pathType }}
            backend:
              service:
                name: {{ include "feedback-platform.componentName" . }}
                port:
                  number: {{ .servicePort }}
      {{- with $ingress.host }}
      host: {{ . | quote }}
      {{- end }}
{{- end }}

{{/* A component's ServiceAccount. (dict "root" $ "component" c "values" v) */}}
{{- define "feedback-platform.serviceAccount" -}}
{{- if .values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "feedback-platform.serviceAccountName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "feedback-platform.labels" . | nindent 4 }}
  {{- with .values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end }}
