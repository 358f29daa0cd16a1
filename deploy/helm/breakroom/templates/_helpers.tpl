{{- define "breakroom.labels" -}}
app.kubernetes.io/part-of: breakroom
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The labels of every pod that runs breakroom's image: the databases' and the labs'
     NetworkPolicies admit these pods. */}}
{{- define "breakroom.podLabels" -}}
app.kubernetes.io/name: breakroom
app.kubernetes.io/part-of: breakroom
{{- end -}}

{{/* url.QueryEscape, then a space as %20: in a URL's user info "+" is a plus sign. */}}
{{- define "breakroom.urlEscape" -}}
{{ . | toString | urlquery | replace "+" "%20" }}
{{- end -}}

{{/* The labs' database, with the user and password URL-encoded (a password holding
     "/", "@" or ":" would otherwise end the user info early). It is kept in the Secret. */}}
{{- define "breakroom.databaseUrl" -}}
postgres://{{ include "breakroom.urlEscape" .Values.postgres.user }}:{{ include "breakroom.urlEscape" (required "secrets.postgres.password is required" .Values.secrets.postgres.password) }}@postgres:5432/{{ include "breakroom.urlEscape" .Values.postgres.database }}
{{- end -}}

{{- define "breakroom.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* What every pod of breakroom's image carries: the registry's pull secrets. */}}
{{- define "breakroom.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The data of the Secret breakroom-secrets; its checksum rolls the pods that read it. */}}
{{- define "breakroom.secretData" -}}
admin-token: {{ required "secrets.adminToken is required (the audience has the URL)" .Values.secrets.adminToken | toString | quote }}
postgres-password: {{ required "secrets.postgres.password is required" .Values.secrets.postgres.password | toString | quote }}
database-url: {{ include "breakroom.databaseUrl" . | quote }}
{{- end -}}

{{/* Pod annotations: a changed Secret rolls the labs' pods on `helm upgrade`. */}}
{{- define "breakroom.secretChecksum" -}}
checksum/breakroom-secrets: {{ include "breakroom.secretData" . | sha256sum }}
{{- end -}}

{{/* The labs' Prometheus jobs are named after their pods' app label (the rules' job). */}}
{{- define "breakroom.scrapedApps" -}}
{{- $apps := list "vote-api" }}
{{- if .Values.items.enabled }}{{ $apps = append $apps "items" }}{{ end }}
{{- if .Values.datasets.enabled }}{{ $apps = append $apps "datasets" }}{{ end }}
{{- if .Values.shop.enabled }}{{ $apps = concat $apps (list "product-catalog" "cart" "checkout") }}{{ end }}
{{- join "," $apps }}
{{- end -}}

{{/* The rule files' checksum: a changed rule rolls the chart's Prometheus. */}}
{{- define "breakroom.rulesChecksum" -}}
{{ (.Files.Glob "files/rules/*.yml").AsConfig | sha256sum }}
{{- end -}}

{{- define "breakroom.prometheusConfig" -}}
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["/etc/prometheus/rules/*.yml"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["alertmanager:9093"]
scrape_configs:
  # Every lab pod of this release, under a job named after its app label (vote-api,
  # items, datasets, product-catalog, cart, checkout: the rules' job label).
  - job_name: breakroom
    kubernetes_sd_configs:
      - role: pod
        namespaces: { names: [{{ .Release.Namespace | quote }}] }
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_app]
        regex: {{ include "breakroom.scrapedApps" . | replace "," "|" | quote }}
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http
        action: keep
      - source_labels: [__meta_kubernetes_pod_label_app]
        target_label: job
{{- end -}}
