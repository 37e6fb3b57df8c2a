{{/* Labels on every object of the release. */}}
{{- define "smarter-cni.labels" -}}
app.kubernetes.io/name: smarter-cni
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: installer
app.kubernetes.io/part-of: smarter-cni
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The DaemonSet's selector: never changes between releases (it is immutable). */}}
{{- define "smarter-cni.selectorLabels" -}}
app.kubernetes.io/name: smarter-cni
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The mode, checked (values.schema.json says the same; this also covers --set without a schema). */}}
{{- define "smarter-cni.mode" -}}
{{- if not (has .Values.mode (list "docker" "bridge")) -}}
{{- fail (printf "mode must be docker or bridge, not %q" (toString .Values.mode)) -}}
{{- end -}}
{{- .Values.mode -}}
{{- end -}}

{{- define "smarter-cni.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name }}{{- else -}}default{{- end -}}
{{- end -}}

{{/* SMARTER_CNI_HEALTH_REQUIRE's parts as the comma list `status --require` takes. */}}
{{- define "smarter-cni.requireList" -}}
{{- splitList " " (include "smarter-cni.healthRequire" .) | compact | join "," -}}
{{- end -}}

{{/* The health check's parts: the value, else the mode's default. */}}
{{- define "smarter-cni.healthRequire" -}}
{{- if .Values.healthRequire -}}{{ .Values.healthRequire }}
{{- else if eq .Values.mode "bridge" -}}config loopback network forwarding nat
{{- else -}}config loopback network
{{- end -}}
{{- end -}}
