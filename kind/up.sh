#!/usr/bin/env bash
# Create the developer loop's three kind clusters and load the BigFleet image
# into each. Safe to re-run: existing clusters are kept, the image is reloaded.
#
#   kind/up.sh            # build bigfleet:dev only if it is missing
#   kind/up.sh --build    # always rebuild it from the Dockerfile first
#   kind/up.sh --down     # delete the three clusters
#
# Needs a running Docker engine, kind and kubectl. BIGFLEET_IMAGE overrides the
# image name (default bigfleet:dev).
set -euo pipefail

cd "$(dirname "$0")/.."
image="${BIGFLEET_IMAGE:-bigfleet:dev}"
clusters=(management managed-a managed-b)

fail() {
    echo "kind/up.sh: $*" >&2
    exit 1
}

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null 2>&1 || fail "needs '$tool' on PATH"
done
docker info >/dev/null 2>&1 || fail "needs a running Docker engine ('docker info' failed)"

if [[ "${1:-}" == "--down" ]]; then
    for cluster in "${clusters[@]}"; do
        kind delete cluster --name "bigfleet-$cluster"
    done
    exit 0
fi

if [[ "${1:-}" == "--build" ]] || ! docker image inspect "$image" >/dev/null 2>&1; then
    [[ -f Dockerfile ]] || fail "no Dockerfile in $(pwd) to build $image from"
    docker build -t "$image" .
fi

for cluster in "${clusters[@]}"; do
    name="bigfleet-$cluster"
    if kind get clusters 2>/dev/null | grep -qx "$name"; then
        echo "kind cluster $name exists; keeping it"
    else
        kind create cluster --config "kind/$cluster.yaml"
    fi
    kind load docker-image "$image" --name "$name"
done

# The operators in the managed clusters reach the shard at the management
# node's address on the `kind` Docker network, through the NodePort Service.
address=$(docker inspect \
    -f '{{with index .NetworkSettings.Networks "kind"}}{{.IPAddress}}{{end}}' \
    bigfleet-management-control-plane)
[[ -n "$address" ]] || fail "bigfleet-management-control-plane has no address on the kind network"

cat <<EOF

Clusters ready: kind-bigfleet-management, kind-bigfleet-managed-a, kind-bigfleet-managed-b.
Managed clusters reach the shard at $address:30780. Next:

  export BIGFLEET_SHARD_ADDRESS=$address:30780
  skaffold run                      # management cluster (kubectl context kind-bigfleet-management)
  skaffold run -p managed-a         # operator + pod controller in managed-a
  skaffold run -p managed-b         # ... and in managed-b
EOF
