{{- define "bigfleet-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bigfleet-operator.fullname" -}}
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

{{- define "bigfleet-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bigfleet-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bigfleet-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "bigfleet-operator.labels" -}}
helm.sh/chart: {{ include "bigfleet-operator.chart" . }}
{{ include "bigfleet-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bigfleet
{{- end }}

{{- define "bigfleet-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "bigfleet-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bigfleet-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret of this cluster's certificate; empty: plaintext. */}}
{{- define "bigfleet-operator.tlsSecret" -}}
{{- if .Values.tls.secretName }}
{{- .Values.tls.secretName }}
{{- else if .Values.tls.certManager.enabled }}
{{- include "bigfleet-operator.fullname" . }}-tls
{{- end }}
{{- end }}

{{/*
The `helm test` check, run by the image's Python: GET every URL given as an
argument; exit 1 naming each one that does not answer 200, with its reason.
*/}}
{{- define "bigfleet-operator.testScript" -}}
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
{{- define "bigfleet-operator.metricsService" -}}
{{- printf "%s-metrics" (include "bigfleet-operator.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}
