{{/*
Names and labels.
*/}}
{{- define "reviewer-roulette.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name, cut to 52 characters so that "-metrics", "-migrate" and the
pod hashes still fit in 63.
*/}}
{{- define "reviewer-roulette.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "reviewer-roulette.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reviewer-roulette.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reviewer-roulette.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "reviewer-roulette.labels" -}}
helm.sh/chart: {{ include "reviewer-roulette.chart" . }}
{{ include "reviewer-roulette.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reviewer-roulette
{{- end }}

{{/*
The selector labels of one component: (dict "root" $ "component" "web").
*/}}
{{- define "reviewer-roulette.componentSelectorLabels" -}}
{{ include "reviewer-roulette.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "reviewer-roulette.componentLabels" -}}
{{ include "reviewer-roulette.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "reviewer-roulette.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reviewer-roulette.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "reviewer-roulette.secretName" -}}
{{- default (include "reviewer-roulette.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "reviewer-roulette.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "reviewer-roulette.configPath" -}}
/etc/reviewer-roulette/config.yaml
{{- end }}

{{/*
The config file's content, shared by the ConfigMap and the migrations hook's copy.
*/}}
{{- define "reviewer-roulette.configFile" -}}
# Rendered by the Helm chart from .Values.config; see docs/configuration.md.
{{- if .Values.config }}
{{ toYaml .Values.config }}
{{- else }}
{}
{{- end }}
{{- end }}

{{/*
Environment shared by every container: the Secret's keys, then the plain settings, then
extraEnv. Required keys make a pod wait (CreateContainerConfigError) until they exist.
*/}}
{{- define "reviewer-roulette.env" -}}
{{- $secret := include "reviewer-roulette.secretName" . }}
{{- $required := list "DATABASE_URL" "GITLAB_TOKEN" "GITLAB_WEBHOOK_SECRET" }}
{{- range $variable, $key := .Values.secret.keys }}
- name: {{ $variable }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      {{- if not (has $variable $required) }}
      optional: true
      {{- end }}
{{- end }}
- name: ROULETTE_CONFIG
  value: {{ include "reviewer-roulette.configPath" . }}
- name: HTTP_PORT
  value: "8080"
{{- with .Values.settings }}
{{- if .publicUrl }}
- name: PUBLIC_URL
  value: {{ .publicUrl | quote }}
{{- end }}
{{- if .gitlabUrl }}
- name: GITLAB_URL
  value: {{ .gitlabUrl | quote }}
{{- end }}
{{- if .mattermostUrl }}
- name: MATTERMOST_URL
  value: {{ .mattermostUrl | quote }}
{{- end }}
{{- if .mattermostTeam }}
- name: MATTERMOST_TEAM
  value: {{ .mattermostTeam | quote }}
{{- end }}
- name: LOG_LEVEL
  value: {{ .logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .logFormat | quote }}
- name: SHUTDOWN_TIMEOUT
  value: {{ .shutdownTimeout | quote }}
- name: WEBHOOK_MAX_ATTEMPTS
  value: {{ .webhook.maxAttempts | quote }}
- name: WEBHOOK_RETRY_SECONDS
  value: {{ .webhook.retrySeconds | quote }}
- name: WEBHOOK_LEASE_SECONDS
  value: {{ .webhook.leaseSeconds | quote }}
- name: WEBHOOK_HANDLER_TIMEOUT
  value: {{ .webhook.handlerTimeout | quote }}
- name: WEBHOOK_RETENTION_DAYS
  value: {{ .webhook.retentionDays | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The writable volumes (the root filesystem is read-only) and the config file.
*/}}
{{- define "reviewer-roulette.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /data
- name: config
  mountPath: /etc/reviewer-roulette
  readOnly: true
{{- end }}

{{/*
(dict "root" $ "configMap" name)
*/}}
{{- define "reviewer-roulette.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.volumes.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .root.Values.volumes.dataSizeLimit }}
- name: config
  configMap:
    name: {{ .configMap }}
{{- end }}

{{/*
The series the alerts look at, as PromQL label matchers.
*/}}
{{- define "reviewer-roulette.alertSelector" -}}
{{- if .Values.metrics.prometheusRule.selector }}
{{- .Values.metrics.prometheusRule.selector }}
{{- else }}
{{- printf "job=\"%s-metrics\", namespace=\"%s\"" (include "reviewer-roulette.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}
