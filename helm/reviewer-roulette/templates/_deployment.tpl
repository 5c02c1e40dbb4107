{{/*
One Deployment of `roulette-bot serve`: (dict "root" $ "component" "web" "values" .Values.web
"workers" 0). Web and worker replicas differ only by WEBHOOK_WORKERS and their values.
*/}}
{{- define "reviewer-roulette.deployment" -}}
{{- $root := .root }}
{{- $values := .values }}
{{- $component := .component }}
{{- $fullname := include "reviewer-roulette.fullname" $root }}
{{- $ids := dict "root" $root "component" $component }}
{{- $grace := $root.Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $grace }}
{{- $grace = add $values.preStopSleepSeconds $root.Values.settings.shutdownTimeout 10 }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ $component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "reviewer-roulette.componentLabels" $ids | nindent 4 }}
spec:
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "reviewer-roulette.componentSelectorLabels" $ids | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "reviewer-roulette.componentLabels" $ids | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A change of the configuration file rolls the pods.
        checksum/config: {{ include "reviewer-roulette.configFile" $root | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "reviewer-roulette.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $grace }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: bot
          image: {{ include "reviewer-roulette.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["roulette-bot", "serve"]
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          env:
            {{- include "reviewer-roulette.env" $root | trim | nindent 12 }}
            - name: WEBHOOK_WORKERS
              value: {{ .workers | quote }}
            - name: DATABASE_POOL_SIZE
              value: {{ $values.databasePool.size | quote }}
            - name: DATABASE_MAX_OVERFLOW
              value: {{ $values.databasePool.maxOverflow | quote }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /liveness
              port: http
            {{- toYaml $root.Values.probes.startup | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /liveness
              port: http
            {{- toYaml $root.Values.probes.liveness | nindent 12 }}
          readinessProbe:
            httpGet:
              {{- /* Web pods stay in the Service while the database is down as long as
              their webhook spool takes deliveries (docs/OPERATIONS.md, "Outages"). */}}
              path: {{ if eq $component "web" }}/readiness?scope=web{{ else }}/readiness{{ end }}
              port: http
            {{- toYaml $root.Values.probes.readiness | nindent 12 }}
          {{- if gt (int $values.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", {{ $values.preStopSleepSeconds | quote }}]
          {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "reviewer-roulette.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "reviewer-roulette.volumes" (dict "root" $root "configMap" (printf "%s-config" $fullname)) | nindent 8 }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- range . }}
        {{- $constraint := deepCopy . }}
        {{- if not (hasKey $constraint "labelSelector") }}
        {{- $_ := set $constraint "labelSelector" (dict "matchLabels" (include "reviewer-roulette.componentSelectorLabels" $ids | fromYaml)) }}
        {{- end }}
        {{- list $constraint | toYaml | nindent 8 }}
        {{- end }}
      {{- end }}
{{- end }}
