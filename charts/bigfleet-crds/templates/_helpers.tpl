{{- define "bigfleet-crds.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bigfleet
{{- end }}

{{/*
One CRD file of files/ (a byte-for-byte copy of the repository's crds/), as
is but for labels and annotations added under its top-level `metadata:`
line; call with (dict "root" $ "file" "bigfleet.lucy.sh_shards.yaml").
*/}}
{{- define "bigfleet-crds.crd" -}}
{{- $text := .root.Files.Get (printf "files/%s" .file) }}
{{- if not (contains "\nmetadata:\n" $text) }}
{{- fail (printf "files/%s: no top-level metadata: line to add labels under" .file) }}
{{- end }}
{{- $meta := include "bigfleet-crds.labels" .root | nindent 4 | printf "  labels:%s\n" }}
{{- if .root.Values.keep }}
{{- $meta = printf "%s  annotations:\n    helm.sh/resource-policy: keep\n" $meta }}
{{- end }}
{{- replace "\nmetadata:\n" (printf "\nmetadata:\n%s" $meta) $text }}
{{- end }}
