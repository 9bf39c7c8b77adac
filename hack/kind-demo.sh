#!/usr/bin/env bash
# `make kind-demo`: ComputeGate in a kind cluster, installed with its Helm chart, on a machine
# with Docker, kind, kubectl and helm. Idempotent: re-running reuses the cluster.
#
#   1. kind cluster from kind-config.yaml (an H100 worker and a T4 worker), fake GPU capacity
#   2. the image from the Dockerfile, loaded into kind under the chart's default name
#   3. helm upgrade --install (3 replicas, self-managed TLS), waiting until ready
#   4. the demo: tenants and a license, then workloads applied as a user would, showing what
#      the user sees: an admitted pod and its decision annotations, a refused pod, a refused
#      Deployment, a CPU-class GPU admitted, and Audit mode admitting with a warning.
#
# Nothing here runs in CI (no Docker there); tests/chart/test_kind.py checks the files it uses.
# Clean up: kind delete cluster --name computegate
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-computegate}"
CONTEXT="kind-$CLUSTER"
NAMESPACE="${NAMESPACE:-computegate-system}"
KIND="${KIND:-kind}"
KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
DOCKER="${DOCKER:-docker}"
VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/computegate/Chart.yaml)
REPOSITORY=$(sed -n 's/^  repository: *//p' charts/computegate/values.yaml | head -n 1)
IMAGE="$REPOSITORY:$VERSION"

step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@" || true; }
k() { "$KUBECTL" --context "$CONTEXT" "$@"; }

step "kind cluster $CLUSTER"
if ! "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  "$KIND" create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s
fi
KUBECTL="$KUBECTL" hack/kind-fake-gpus.sh "$CONTEXT"

step "image $IMAGE"
"$DOCKER" build -t "$IMAGE" .
"$KIND" load docker-image "$IMAGE" --name "$CLUSTER"

step "helm upgrade --install computegate"
"$HELM" upgrade --install computegate charts/computegate --kube-context "$CONTEXT" \
  --namespace "$NAMESPACE" --create-namespace --wait --timeout 5m
k -n "$NAMESPACE" rollout status "deployment/computegate" --timeout 180s
k get validatingwebhookconfiguration computegate-validating \
  -o jsonpath='{.webhooks[0].clientConfig.caBundle}' | grep -q . \
  || { echo "kind-demo: the operator did not inject the CA bundle" >&2; exit 1; }

step "tenants, namespaces and a license"
k apply -f hack/kind-demo/cluster.yaml
k get tenants,exportlicenses

step "workloads, as a user applies them"
for manifest in hack/kind-demo/workloads/*.yaml; do
  printf '\n# %s\n' "$(sed -n '1s/^# //p' "$manifest")"
  show k apply -f "$manifest"
done
show k -n kestrel-ml get pod train-h100 -o jsonpath='{.metadata.annotations}'
echo

step "Audit mode (the emergency switch): the refused pod is admitted with a warning"
show k patch compliancepolicy default --type merge -p '{"spec":{"enforcement":"Audit"}}'
sleep 3  # the operator's watch picks the change up
show k apply -f hack/kind-demo/workloads/2-volga-h100-pod.yaml
show k patch compliancepolicy default --type merge -p '{"spec":{"enforcement":"Enforce"}}'

step "done: kubectl --context $CONTEXT get pods -A; kind delete cluster --name $CLUSTER to clean up"
