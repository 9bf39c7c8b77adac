#!/usr/bin/env bash
# Give the kind workers fake nvidia.com/gpu capacity matching their GPU labels, as the NVIDIA
# device plugin would report it. Patches each node's status (capacity and allocatable) through
# the status subresource; run it again after a node restarts (the kubelet resets the status).
#
# Usage: hack/kind-fake-gpus.sh [KUBECTL_CONTEXT]   (default: kind-computegate)
set -euo pipefail

CONTEXT="${1:-kind-computegate}"
KUBECTL="${KUBECTL:-kubectl}"

nodes=$("$KUBECTL" --context "$CONTEXT" get nodes -l nvidia.com/gpu.present=true \
  -o jsonpath='{range .items[*]}{.metadata.name}{"="}{.metadata.labels.nvidia\.com/gpu\.count}{"\n"}{end}')
if [ -z "$nodes" ]; then
  echo "kind-fake-gpus: no node labelled nvidia.com/gpu.present=true in context $CONTEXT" >&2
  exit 1
fi

while IFS='=' read -r node count; do
  [ -n "$node" ] || continue
  case "$count" in
    ''|*[!0-9]*) echo "kind-fake-gpus: node $node has no numeric nvidia.com/gpu.count label" >&2; exit 1 ;;
  esac
  patch=$(printf '{"status":{"capacity":{"nvidia.com/gpu":"%s"},"allocatable":{"nvidia.com/gpu":"%s"}}}' "$count" "$count")
  "$KUBECTL" --context "$CONTEXT" patch node "$node" --subresource=status --type=merge -p "$patch" >/dev/null
  echo "kind-fake-gpus: $node now offers nvidia.com/gpu: $count"
done <<<"$nodes"
