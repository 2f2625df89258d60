{{/*
Names. A component's name is the full name, shortened so that the whole
stays within 52 characters (StatefulSet pod names and their
controller-revision-hash labels must fit in 63), then the component: the
suffix always survives, so components never share a name.
*/}}
{{- define "bigfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bigfleet.fullname" -}}
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

{{- define "bigfleet.componentName" -}}
{{- $room := sub 51 (len .component) | int }}
{{- printf "%s-%s" (include "bigfleet.fullname" .root | trunc $room | trimSuffix "-") .component }}
{{- end }}

{{- define "bigfleet.coordinator.name" -}}
{{- include "bigfleet.componentName" (dict "root" . "component" "coordinator") }}
{{- end }}

{{- define "bigfleet.coordinator.headless" -}}
{{- include "bigfleet.componentName" (dict "root" . "component" "coordinator-headless") }}
{{- end }}

{{- define "bigfleet.shard.name" -}}
{{- include "bigfleet.componentName" (dict "root" . "component" "shard") }}
{{- end }}

{{- define "bigfleet.etcd.name" -}}
{{- include "bigfleet.componentName" (dict "root" . "component" "etcd") }}
{{- end }}

{{- define "bigfleet.fakeProvider.name" -}}
{{- include "bigfleet.componentName" (dict "root" . "component" "fake-provider") }}
{{- end }}

{{- define "bigfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels; call with (dict "root" $ "component" "shard"). */}}
{{- define "bigfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bigfleet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "bigfleet.labels" -}}
helm.sh/chart: {{ include "bigfleet.chart" .root }}
{{ include "bigfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: bigfleet
{{- end }}

{{- define "bigfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The service account of a component; call with (dict "root" $ "component" "shard"). */}}
{{- define "bigfleet.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "bigfleet.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* Which coordinator store and etcd are in use. */}}
{{- define "bigfleet.coordinator.embedded" -}}
{{- if eq .Values.coordinator.store "embedded" }}true{{ end }}
{{- end }}

{{- define "bigfleet.etcd.bundled" -}}
{{- if and .Values.coordinator.enabled (eq .Values.coordinator.store "etcd") (not .Values.etcd.external.endpoints) }}true{{ end }}
{{- end }}

{{- define "bigfleet.etcd.endpoints" -}}
{{- if .Values.etcd.external.endpoints }}
{{- join "," .Values.etcd.external.endpoints }}
{{- else }}
{{- $name := include "bigfleet.etcd.name" . }}
{{- $endpoints := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $endpoints = append $endpoints (printf "%s-%d.%s.%s.svc:%d" $name $i $name $.Release.Namespace (int $.Values.etcd.ports.client)) }}
{{- end }}
{{- join "," $endpoints }}
{{- end }}
{{- end }}

{{/* Every coordinator replica by its stable name, for `bigfleet ctl --coordinator`. */}}
{{- define "bigfleet.coordinator.replicaAddresses" -}}
{{- $name := include "bigfleet.coordinator.name" . }}
{{- $headless := include "bigfleet.coordinator.headless" . }}
{{- $replicas := ternary 1 (int .Values.coordinator.replicas) (eq .Values.coordinator.store "embedded") }}
{{- $addresses := list }}
{{- range $i := until $replicas }}
{{- $addresses = append $addresses (printf "%s-%d.%s.%s.svc:%d" $name $i $headless $.Release.Namespace (int $.Values.coordinator.ports.grpc)) }}
{{- end }}
{{- join "," $addresses }}
{{- end }}

{{/*
A soft anti-affinity that spreads a component's replicas over nodes, used
when the component's own affinity is left empty.
*/}}
{{- define "bigfleet.affinity" -}}
{{- $affinity := (index .root.Values .component).affinity }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "bigfleet.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/*
Mutual TLS (charts/README.md, "TLS"). Names made here, like every
component name, stay within 51 characters: cert-manager labels what it
issues with the Certificate's name, and a label value holds 63. Every BigFleet Secret is a
kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt) mounted read-only at
/etc/bigfleet/tls; a component runs with TLS when its Secret is named or
tls.certManager issues it. Each helper yields a Secret name, or nothing for
plaintext.
*/}}
{{- define "bigfleet.tlsDir" -}}
/etc/bigfleet/tls
{{- end }}

{{- define "bigfleet.certManager" -}}
{{- if .Values.tls.certManager.enabled }}true{{ end }}
{{- end }}

{{- define "bigfleet.coordinator.tlsSecret" -}}
{{- if .Values.coordinator.tls.secretName }}
{{- .Values.coordinator.tls.secretName }}
{{- else if .Values.tls.certManager.enabled }}
{{- include "bigfleet.componentName" (dict "root" . "component" "coordinator-tls") }}
{{- end }}
{{- end }}

{{/* The Secret of one shard; call with (dict "root" $ "ordinal" 0). */}}
{{- define "bigfleet.shard.tlsSecret" -}}
{{- $t := .root.Values.shard.tls }}
{{- if $t.secretNames }}
{{- if lt .ordinal (len $t.secretNames) }}{{ index $t.secretNames .ordinal }}{{ end }}
{{- else if $t.secretNamePrefix }}
{{- printf "%s%d" $t.secretNamePrefix (int .ordinal) }}
{{- else if .root.Values.tls.certManager.enabled }}
{{- include "bigfleet.componentName" (dict "root" .root "component" (printf "shard-%d-tls" (int .ordinal))) }}
{{- end }}
{{- end }}

{{- define "bigfleet.shard.tls" -}}
{{- if include "bigfleet.shard.tlsSecret" (dict "root" . "ordinal" 0) }}true{{ end }}
{{- end }}

{{- define "bigfleet.fakeProvider.tlsSecret" -}}
{{- if .Values.fakeProvider.tls.secretName }}
{{- .Values.fakeProvider.tls.secretName }}
{{- else if .Values.tls.certManager.enabled }}
{{- include "bigfleet.componentName" (dict "root" . "component" "fake-provider-tls") }}
{{- end }}
{{- end }}

{{/* The bundled etcd's server and peer certificate. */}}
{{- define "bigfleet.etcd.tlsSecret" -}}
{{- if include "bigfleet.etcd.bundled" . }}
{{- if .Values.etcd.tls.secretName }}
{{- .Values.etcd.tls.secretName }}
{{- else if .Values.tls.certManager.enabled }}
{{- include "bigfleet.componentName" (dict "root" . "component" "etcd-tls") }}
{{- end }}
{{- end }}
{{- end }}

{{/* The coordinator's etcd client certificate. */}}
{{- define "bigfleet.coordinator.etcdTLSSecret" -}}
{{- if .Values.coordinator.etcdTLS.secretName }}
{{- .Values.coordinator.etcdTLS.secretName }}
{{- else if and .Values.tls.certManager.enabled (include "bigfleet.etcd.bundled" .) }}
{{- include "bigfleet.componentName" (dict "root" . "component" "coordinator-etcd-client-tls") }}
{{- end }}
{{- end }}

{{/* The three flags of mutual TLS for the files in one directory. */}}
{{- define "bigfleet.tlsArgs" -}}
- --tls-cert={{ . }}/tls.crt
- --tls-key={{ . }}/tls.key
- --tls-ca={{ . }}/ca.crt
{{- end }}

{{/* The DNS names a Service answers to in its namespace; call with (dict "root" $ "service" NAME). */}}
{{- define "bigfleet.serviceDNSNames" -}}
- {{ .service }}
- {{ .service }}.{{ .root.Release.Namespace }}
- {{ .service }}.{{ .root.Release.Namespace }}.svc
{{- end }}

{{/*
A cert-manager Certificate writing a kubernetes.io/tls Secret; call with
(dict "root" $ "component" "shard" "name" NAME "secretName" SECRET "uris" LIST "dnsNames" LIST).
No common name unless given ("commonName"): the identity is the one
bigfleet:// URI SAN, and servers are checked against their DNS names.
*/}}
{{- define "bigfleet.certificate" -}}
{{- $cm := .root.Values.tls.certManager }}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "bigfleet.labels" . | nindent 4 }}
spec:
  secretName: {{ .secretName }}
  secretTemplate:
    labels:
      {{- include "bigfleet.selectorLabels" . | nindent 6 }}
  {{- with .commonName }}
  commonName: {{ . }}
  {{- end }}
  duration: {{ $cm.duration }}
  renewBefore: {{ $cm.renewBefore }}
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  usages:
    - digital signature
    - server auth
    - client auth
  {{- with .uris }}
  uris:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .dnsNames }}
  dnsNames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  issuerRef:
    name: {{ $cm.issuerRef.name }}
    kind: {{ $cm.issuerRef.kind }}
    group: {{ $cm.issuerRef.group }}
{{- end }}

{{/*
The ingress rule of a metrics port when networkPolicy.enabled: from
networkPolicy.metrics.from (and, with testPod, the release's `helm test` pod,
which asks the coordinators and shards for /readyz), or from anywhere when
that list is empty.
*/}}
{{- define "bigfleet.metricsRule" -}}
{{- with .root.Values.networkPolicy.metrics.from }}
{{- $from := . }}
{{- if $.testPod }}
{{- $from = append $from (dict "podSelector" (dict "matchLabels" (include "bigfleet.selectorLabels" (dict "root" $.root "component" "test") | fromYaml))) }}
{{- end }}
- from:
    {{- toYaml $from | nindent 4 }}
  ports:
    - port: {{ $.port }}
{{- else }}
- ports:
    - port: {{ .port }}
{{- end }}
{{- end }}

{{/*
The `helm test` check, run by the image's Python: GET every URL given as an
argument; exit 1 naming each one that does not answer 200, with its reason.
*/}}
{{- define "bigfleet.testScript" -}}
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
