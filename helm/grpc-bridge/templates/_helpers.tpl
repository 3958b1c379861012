{{/*
Helpers shared by this chart's templates and by the sidecar templates other
charts call. They read only .Values and .Release, never .Chart: a parent chart
calls them with (dict "Values" .Values.bridge "Release" .Release), where
.Chart would be the parent's.
*/}}

{{/* "<release>-grpc-bridge", or the release name when it already says grpc-bridge. */}}
{{- define "grpc-bridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "grpc-bridge" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-grpc-bridge" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding config.yaml; its volume is mounted at /etc/grpc-bridge. */}}
{{- define "grpc-bridge.configMapName" -}}
{{- printf "%s-config" (include "grpc-bridge.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "grpc-bridge.selectorLabels" -}}
app.kubernetes.io/name: grpc-bridge
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "grpc-bridge.labels" -}}
{{ include "grpc-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "grpc-bridge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Ports come from the bridge's own config, so containerPort and listen.port cannot disagree. */}}
{{- define "grpc-bridge.proxyPort" -}}
{{- (.Values.config.listen | default dict).port | default 8080 | int -}}
{{- end -}}

{{- define "grpc-bridge.adminPort" -}}
{{- (.Values.config.admin | default dict).port | default 8081 | int -}}
{{- end -}}

{{/* Port names are unique per pod: prefixed in sidecar mode so they cannot clash with the app's. */}}
{{- define "grpc-bridge.portPrefix" -}}
{{- if eq .Values.mode "sidecar" -}}bridge-{{- end -}}
{{- end -}}

{{/* Changes whenever the configuration does; as a pod annotation it rolls the pods. */}}
{{- define "grpc-bridge.configChecksum" -}}
{{- toYaml .Values.config | sha256sum -}}
{{- end -}}

{{/*
Fails the render when the grace period cannot cover the drain: SIGTERM, then
drain_s still serving, then up to timeout_s for requests in flight. The
defaults (0 and 25) are the bridge's own when the config leaves them out.
*/}}
{{- define "grpc-bridge.validate" -}}
{{- if not (has .Values.mode (list "standalone" "sidecar")) -}}
{{- fail (printf "mode must be standalone or sidecar, not %v" .Values.mode) -}}
{{- end -}}
{{- $shutdown := .Values.config.shutdown | default dict -}}
{{- $drain := $shutdown.drain_s | default 0 | float64 -}}
{{- $timeout := $shutdown.timeout_s | default 25 | float64 -}}
{{- $grace := .Values.terminationGracePeriodSeconds | float64 -}}
{{- if le $grace (addf $drain $timeout) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdown.drain_s + config.shutdown.timeout_s (%v + %v), or the bridge is killed mid-drain" $grace $drain $timeout) -}}
{{- end -}}
{{- end -}}
