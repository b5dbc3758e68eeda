{{/* The chart's name, at most 63 characters. */}}
{{- define "memtasks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 63 characters: the prefix of every resource. */}}
{{- define "memtasks.fullname" -}}
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

{{- define "memtasks.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memtasks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memtasks.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "memtasks.labels" -}}
helm.sh/chart: {{ include "memtasks.chart" . }}
{{ include "memtasks.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "memtasks.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the MEMTASKS_* connection URLs. */}}
{{- define "memtasks.secretName" -}}
{{- default (include "memtasks.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret's data (stringData): the connection URLs, which may hold passwords. */}}
{{- define "memtasks.secretData" -}}
MEMTASKS_DATABASE_URL: {{ required "secrets.databaseUrl is required" .Values.secrets.databaseUrl | quote }}
MEMTASKS_BROKER_URL: {{ required "secrets.brokerUrl is required" .Values.secrets.brokerUrl | quote }}
MEMTASKS_LOCK_REDIS_URL: {{ required "secrets.lockRedisUrl is required" .Values.secrets.lockRedisUrl | quote }}
{{- end }}

{{/* envFrom of every long-running pod: the settings ConfigMap and the URLs Secret. */}}
{{- define "memtasks.envFrom" -}}
- configMapRef:
    name: {{ include "memtasks.fullname" . }}
- secretRef:
    name: {{ include "memtasks.secretName" . }}
{{- end }}

{{/* Pod annotations rolling the pods when the settings or the URLs change. */}}
{{- define "memtasks.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod-level fields shared by every pod. */}}
{{- define "memtasks.podSpec" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The root filesystem is read-only: MEMTASKS_DATA_DIR and /tmp are emptyDirs. */}}
{{- define "memtasks.volumeMounts" -}}
- name: data
  mountPath: /var/lib/memtasks
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "memtasks.volumes" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- end }}
