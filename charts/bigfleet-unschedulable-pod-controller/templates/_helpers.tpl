{{- define "bigfleet-upc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bigfleet-upc.fullname" -}}
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

{{- define "bigfleet-upc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bigfleet-upc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bigfleet-upc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: pod-controller
{{- end }}

{{- define "bigfleet-upc.labels" -}}
helm.sh/chart: {{ include "bigfleet-upc.chart" . }}
{{ include "bigfleet-upc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bigfleet
{{- end }}

{{- define "bigfleet-upc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "bigfleet-upc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bigfleet-upc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The `helm test` check, run by the image's Python: GET every URL given as an
argument; exit 1 naming each one that does not answer 200, with its reason.
*/}}
{{- define "bigfleet-upc.testScript" -}}
import sys, urllib.request
failed = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            print(url, answer.status)
    except Exception as err:
        reason = err.read().decode(errors="replace").strip() if hasattr(err, "read") else ""
        failed.append(f"{url}: {err} {reason}".strip())
for line in failed:
    print(line, file=sys.stderr)
sys.exit(1 if failed else 0)
{{- end }}

{{/* The metrics Service; a Service name is one DNS label, at most 63 characters. */}}
{{- define "bigfleet-upc.metricsService" -}}
{{- printf "%s-metrics" (include "bigfleet-upc.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
