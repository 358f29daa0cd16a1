{{- define "breakroom.labels" -}}
app.kubernetes.io/part-of: breakroom
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "breakroom.databaseUrl" -}}
postgres://{{ .Values.postgres.user }}:$(POSTGRES_PASSWORD)@postgres:5432/{{ .Values.postgres.database }}
{{- end -}}

{{- define "breakroom.image" -}}
{{ .Values.voteApi.image.repository }}:{{ .Values.voteApi.image.tag }}
{{- end -}}
