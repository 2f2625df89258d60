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
API access for the Python controllers. The kopf and kr8s clients in the
image read a kubeconfig file with an inline token and do not load the
in-cluster service-account config, so an init container writes one into
a memory-backed volume from a long-lived service-account token Secret
(ADR 0013). Call with (dict "root" $ "component" "shard").
*/}}
{{- define "bigfleet.kubeconfigPath" -}}
/var/run/bigfleet/kube/kubeconfig
{{- end }}

{{- define "bigfleet.kubeconfigInitContainer" -}}
- name: kubeconfig
  image: {{ include "bigfleet.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["/bin/sh", "-ec"]
  args:
    - |
      dir=/var/run/bigfleet/token
      token=""
      IFS= read -r token < "$dir/token" || true
      if [ -z "$token" ]; then
        echo "service-account token not issued yet into its Secret; retrying" >&2
        exit 1
      fi
      host="$KUBERNETES_SERVICE_HOST"
      case "$host" in *:*) host="[$host]" ;; esac
      umask 077
      cat > {{ include "bigfleet.kubeconfigPath" . }} <<EOF
      apiVersion: v1
      kind: Config
      clusters:
        - name: in-cluster
          cluster:
            server: "https://$host:$KUBERNETES_SERVICE_PORT"
            certificate-authority: "$dir/ca.crt"
      users:
        - name: service-account
          user:
            token: "$token"
      contexts:
        - name: in-cluster
          context: {cluster: in-cluster, user: service-account}
      current-context: in-cluster
      EOF
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {cpu: 100m, memory: 64Mi}
  volumeMounts:
    - {name: kube, mountPath: /var/run/bigfleet/kube}
    - {name: token, mountPath: /var/run/bigfleet/token, readOnly: true}
{{- end }}

{{- define "bigfleet.kubeconfigVolumes" -}}
- name: kube
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: token
  secret:
    secretName: {{ include "bigfleet.componentName" . }}-token
{{- end }}

{{- define "bigfleet.kubeconfigMount" -}}
- {name: kube, mountPath: /var/run/bigfleet/kube, readOnly: true}
{{- end }}

{{/* The long-lived token Secret the init container reads. */}}
{{- define "bigfleet.tokenSecret" -}}
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: {{ include "bigfleet.componentName" . }}-token
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "bigfleet.labels" . | nindent 4 }}
  annotations:
    kubernetes.io/service-account.name: {{ include "bigfleet.serviceAccountName" . }}
{{- end }}
