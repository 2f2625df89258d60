#!/usr/bin/env bash
# Build the control-plane binaries the cluster test tier runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, a matching kubectl, etcd, kwok) and helm (for the chart
# tests) from their Go modules and cache them outside the repository. Idempotent: a complete cache
# is reused as is.
#
#   scripts/build-control-plane.sh            build or reuse, print the bin dir
#   KUBE_VERSION=1.34.4 scripts/...           choose another Kubernetes release
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at v0.0.0 and
# only its own replace directives (ignored in a dependency) resolve them, so
# `go install ...@version` cannot work. We pin every staging module to v0.<minor>.<patch>.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.34.4}
KWOK_VERSION=${KWOK_VERSION:-0.7.0}
# helm 3.19 is built on the same Kubernetes 1.34 client libraries and needs Go >= 1.24.
HELM_VERSION=${HELM_VERSION:-3.19.5}
CACHE_ROOT=${BIGFLEET_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bigfleet/control-plane}
OUT="$CACHE_ROOT/v$KUBE_VERSION"
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
BINS=("${KUBE_BINS[@]}" etcd kwok helm)

complete() { for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || return 1; done; }
if complete; then echo "$OUT"; exit 0; fi

command -v go >/dev/null || { echo "go toolchain not found: install Go >= 1.24" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
minor=$(cut -d. -f2 <<<"$KUBE_VERSION")
staging="0.${KUBE_VERSION#1.}"
mkdir -p "$OUT"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
log() { echo "[build-control-plane] $*" >&2; }

build_kube() {
  local missing=0; for b in "${KUBE_BINS[@]}"; do [ -x "$OUT/$b" ] || missing=1; done
  [ "$missing" = 0 ] && return
  log "building Kubernetes v$KUBE_VERSION (cold builds take 10-25 minutes on 2 cores)"
  mkdir -p "$work/kube" && cd "$work/kube"
  go mod init local.build/kube >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local args=("-require=k8s.io/kubernetes@v$KUBE_VERSION")
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u); do
    args+=("-require=$m@v$staging" "-replace=$m=$m@v$staging")
  done
  local godebug; godebug=$(awk '$1 == "godebug" {print $2}' "$gomod")
  [ -n "$godebug" ] && args+=("-godebug=$godebug")
  go mod edit "${args[@]}"
  local pkgs; pkgs=$(printf "k8s.io/kubernetes/cmd/%s " "${KUBE_BINS[@]}")
  # shellcheck disable=SC2046
  go get $(for p in $pkgs; do printf '%s@v%s ' "$p" "$KUBE_VERSION"; done)
  local ld="-s -w"
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  done
  # shellcheck disable=SC2086
  go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$OUT/" $pkgs
  # Remember which etcd this release was tested with.
  go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3 > "$OUT/.etcd-version"
}

build_etcd() {
  [ -x "$OUT/etcd" ] && return
  local ver; ver=$(cat "$OUT/.etcd-version" 2>/dev/null || echo v3.6.4)
  log "building etcd $ver"
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init local.build/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ver"
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  [ -x "$OUT/kwok" ] && return
  log "building kwok v$KWOK_VERSION"
  GOBIN="$OUT" go install "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
}

build_helm() {
  [ -x "$OUT/helm" ] && return
  log "building helm v$HELM_VERSION"
  cd "$work"  # outside any module: the pins of the wrappers above must not apply
  # Stamp what helm's Makefile stamps: its own version, and the Kubernetes minor of its
  # client libraries, which `helm template` and `helm lint` assume without a cluster.
  local gomod kube_minor p
  gomod=$(go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  kube_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$gomod")
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kube_minor"
  done
  GOBIN="$OUT" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
}

start=$(date +%s)
build_kube
build_etcd
build_kwok
build_helm
# From here on the build has succeeded: the version lines are diagnostics and must never turn it
# into a failure (a pipe into `head` under pipefail once did, with SIGPIPE's exit 141).
complete || { log "build finished but binaries are missing in $OUT"; exit 1; }
first_line() { local v; v=$("$OUT/$1" --version 2>&1) || true; log "${v%%$'\n'*}"; }
first_line kube-apiserver || true
first_line etcd || true
log "done in $(( $(date +%s) - start ))s"
echo "$OUT"
