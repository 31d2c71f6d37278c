#!/usr/bin/env bash
# Build the local control plane's binaries from Go module releases into BIN (DESIGN section 6).
# Usage: build-binaries.sh BIN K8S_VERSION ETCD_VERSION KWOK_VERSION HELM_VERSION
# Each binary is built only when missing, so an interrupted build resumes where it stopped.
set -euo pipefail
BIN=$1 KV=$2 EV=$3 KWOK=$4 HV=$5
MINOR=$(echo "$KV" | cut -d. -f2)
PATCH=${KV##*.}
export CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/megagpu-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

need=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$BIN/$b" ] || need+=("k8s.io/kubernetes/cmd/$b")
done
if [ ${#need[@]} -gt 0 ]; then
  step "kubernetes v$KV: resolving modules"
  mkdir "$WORK/k8s"; cd "$WORK/k8s"
  go mod init local/k8sbins >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@v$KV"
  GM=$(go mod download -json "k8s.io/kubernetes@v$KV" | python3 -c 'import sys,json;print(json.load(sys.stdin)["GoMod"])')
  for m in $(awk '$2=="v0.0.0"{print $1}' "$GM" | sort -u); do
    go mod edit -replace="$m=$m@v0.$MINOR.$PATCH"
  done
  LD="-s -w -X k8s.io/component-base/version.gitVersion=v$KV -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR -X k8s.io/component-base/version.gitTreeState=clean"
  LD="$LD -X k8s.io/client-go/pkg/version.gitVersion=v$KV -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$MINOR"
  step "kubernetes v$KV: compiling ${need[*]##*/} (the long part)"
  go build -trimpath -ldflags "$LD" -o "$BIN/" "${need[@]}"
  cd - >/dev/null
fi
if [ ! -x "$BIN/etcd" ]; then
  step "etcd v$EV"
  mkdir "$WORK/etcd"; cd "$WORK/etcd"
  go mod init local/etcdbin >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@v$EV"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  cd - >/dev/null
fi
if [ ! -x "$BIN/kwokctl" ] || [ ! -x "$BIN/kwok" ]; then
  step "kwok $KWOK"
  GOFLAGS= GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK"
fi
if [ ! -x "$BIN/helm" ] || [ "$(cat "$BIN/.helm-version" 2>/dev/null)" != "$HV" ]; then
  step "helm $HV"
  GOFLAGS= GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HV" "helm.sh/helm/v3/cmd/helm@$HV"
  echo "$HV" > "$BIN/.helm-version"
fi
step "done: $(ls "$BIN" | tr '\n' ' ')"
