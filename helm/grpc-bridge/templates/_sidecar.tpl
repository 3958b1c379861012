{{/*
The bridge container and its volume, for this chart's Deployment and for other
charts' pods. From a parent chart that depends on this one with `alias: bridge`
(values under `bridge:`, mode: sidecar):

  {{- $bridge := dict "Values" .Values.bridge "Release" .Release }}
  spec:
    template:
      metadata:
        annotations:
          checksum/grpc-bridge-config: {{ include "grpc-bridge.configChecksum" $bridge }}
      spec:
        {{- with include "grpc-bridge.sidecarInitContainers" $bridge }}
        initContainers:
          {{- . | nindent 10 }}
        {{- end }}
        containers:
          - name: app
            ...
          {{- include "grpc-bridge.sidecarContainers" $bridge | nindent 10 }}
        volumes:
          {{- include "grpc-bridge.sidecarVolumes" $bridge | nindent 10 }}

The ConfigMap itself is rendered by this chart (as a dependency) under the same name.
*/}}

{{/* The container, as one list item; a native sidecar when mode is sidecar and sidecar.native. */}}
{{- define "grpc-bridge.sidecarContainer" -}}
{{- $prefix := include "grpc-bridge.portPrefix" . -}}
{{- $admin := printf "%sadmin" $prefix -}}
- name: {{ .Values.containerName }}
  image: {{ include "grpc-bridge.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") .Values.sidecar.native }}
  # A native sidecar: started before the app containers, stopped after them.
  restartPolicy: Always
  {{- end }}
  env:
    - name: GRPC_BRIDGE_CONFIG
      value: /etc/grpc-bridge/config.yaml
    {{- with .Values.tracing }}
    {{- if .enabled }}
    - name: OTEL_TRACES_EXPORTER
      value: otlp
    - name: OTEL_EXPORTER_OTLP_PROTOCOL
      value: {{ .protocol | quote }}
    {{- with .endpoint }}
    - name: OTEL_EXPORTER_OTLP_ENDPOINT
      value: {{ . | quote }}
    {{- end }}
    - name: OTEL_SERVICE_NAME
      value: {{ .serviceName | default (include "grpc-bridge.fullname" $) | quote }}
    {{- range $name, $value := .env }}
    - name: {{ $name }}
      value: {{ $value | toString | quote }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- with .Values.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ $prefix }}http
      containerPort: {{ include "grpc-bridge.proxyPort" . }}
      protocol: TCP
    - name: {{ $admin }}
      containerPort: {{ include "grpc-bridge.adminPort" . }}
      protocol: TCP
  startupProbe:
    httpGet: {path: /healthz, port: {{ $admin }}}
    {{- toYaml .Values.probes.startup | nindent 4 }}
  livenessProbe:
    httpGet: {path: /healthz, port: {{ $admin }}}
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet: {path: /readyz, port: {{ $admin }}}
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: grpc-bridge-config
      mountPath: /etc/grpc-bridge
      readOnly: true
{{- end -}}

{{/* The container when it belongs in initContainers (a native sidecar), else nothing. */}}
{{- define "grpc-bridge.sidecarInitContainers" -}}
{{- if and (eq .Values.mode "sidecar") .Values.sidecar.native -}}
{{- include "grpc-bridge.sidecarContainer" . -}}
{{- end -}}
{{- end -}}

{{/* The container when it belongs in containers (standalone, or a plain sidecar), else nothing. */}}
{{- define "grpc-bridge.sidecarContainers" -}}
{{- if not (and (eq .Values.mode "sidecar") .Values.sidecar.native) -}}
{{- include "grpc-bridge.sidecarContainer" . -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap volume the container mounts, as one list item. */}}
{{- define "grpc-bridge.sidecarVolumes" -}}
- name: grpc-bridge-config
  configMap:
    name: {{ include "grpc-bridge.configMapName" . }}
{{- end -}}
