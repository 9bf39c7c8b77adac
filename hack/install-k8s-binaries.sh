#!/usr/bin/env bash
# Builds the real Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), kwok's simulated nodes and helm from their Go modules and caches
# them outside the repo, the way envtest's assets are laid out.
# Idempotent: a second run with the same pins finds the binaries and does nothing.
#
# Binaries a user already has are used first: KUBEBUILDER_ASSETS (setup-envtest's folder with
# etcd, kube-apiserver, kubectl) or COMPUTEGATE_ETCD / _KUBE_APISERVER / _KUBECTL / _HELM /
# _KUBE_CONTROLLER_MANAGER / _KUBE_SCHEDULER / _KWOK paths.
# This script only fills in what is still missing, and prints the folder to use.
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE="${COMPUTEGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/computegate}"
BIN="$CACHE/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

mkdir -p "$BIN"
log() { echo "install-k8s-binaries: $*" >&2; }

have() {  # have NAME ENVVAR: link a binary the user already has into $BIN
  # Same order as the Python harness (computegate.devcluster.find_binaries).
  local name=$1 var=$2 path=""
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then path=$KUBEBUILDER_ASSETS/$name
  elif [ -n "${!var:-}" ] && [ -x "${!var}" ]; then path=${!var}
  fi
  [ -n "$path" ] || return 1
  ln -sf "$path" "$BIN/$name"
  log "using $name from $path"
}

build_kubernetes() {
  local work="$CACHE/build/kubernetes-$KUBERNETES_VERSION"
  mkdir -p "$work"
  if [ ! -f "$work/go.mod" ]; then
    log "resolving k8s.io/kubernetes@$KUBERNETES_VERSION"
    local gomod
    gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module computegate.local/k8s-build"
      echo
      echo "go 1.26.0"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      # kubernetes' own go.mod points its staging modules at ./staging; use their releases instead.
      grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
    } >"$work/go.mod.tmp"
    cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    mv "$work/go.mod.tmp" "$work/go.mod"
    (cd "$work" && go mod tidy -e >/dev/null 2>&1 || true)
  fi
  local pkg=k8s.io/component-base/version
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local major=1 minor; minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
  local ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  local name
  for name in "$@"; do
    log "building $name $KUBERNETES_VERSION (several minutes on a cold cache)"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "k8s.io/kubernetes/cmd/$name")
    mv "$BIN/$name.tmp" "$BIN/$name"
  done
}

build_module_binary() {  # build_module_binary NAME MODULE VERSION PACKAGE LDFLAGS
  local name=$1 module=$2 version=$3 package=$4 ldflags=$5
  local work="$CACHE/build/$name-$version"
  mkdir -p "$work"
  if [ ! -f "$work/go.mod" ]; then
    printf 'module computegate.local/%s-build\n\ngo 1.26.0\n' "$name" >"$work/go.mod"
    if ! (cd "$work" && go get "$module@$version" >"$work/go-get.log" 2>&1); then
      cat "$work/go-get.log" >&2
      rm -f "$work/go.mod"  # so the next run resolves again
      return 1
    fi
  fi
  log "building $name $version"
  (cd "$work" && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp" "$package")
  mv "$BIN/$name.tmp" "$BIN/$name"
}

missing_k8s=()
[ -x "$BIN/kube-apiserver" ] || have kube-apiserver COMPUTEGATE_KUBE_APISERVER || missing_k8s+=(kube-apiserver)
[ -x "$BIN/kube-controller-manager" ] || have kube-controller-manager COMPUTEGATE_KUBE_CONTROLLER_MANAGER || missing_k8s+=(kube-controller-manager)
[ -x "$BIN/kube-scheduler" ] || have kube-scheduler COMPUTEGATE_KUBE_SCHEDULER || missing_k8s+=(kube-scheduler)
[ -x "$BIN/kubectl" ] || have kubectl COMPUTEGATE_KUBECTL || missing_k8s+=(kubectl)
[ ${#missing_k8s[@]} -eq 0 ] || build_kubernetes "${missing_k8s[@]}"

[ -x "$BIN/etcd" ] || have etcd COMPUTEGATE_ETCD || build_module_binary etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 ""

[ -x "$BIN/helm" ] || have helm COMPUTEGATE_HELM || build_module_binary helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

[ -x "$BIN/kwok" ] || have kwok COMPUTEGATE_KWOK || build_module_binary kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
  "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"

echo "$BIN"
