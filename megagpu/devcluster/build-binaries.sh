#!/usr/bin/env bash
# Build the local control plane's binaries from Go module releases into BIN (DESIGN section 6).
# Usage: build-binaries.sh BIN K8S_VERSION ETCD_VERSION KWOK_VERSION HELM_VERSION CONTAINERD_VERSION
#        CRI_TOOLS_VERSION
# Each binary is built only when missing, so an interrupted build resumes where it stopped.
set -euo pipefail
BIN=$1 KV=$2 EV=$3 KWOK=$4 HV=$5 CV=$6 CRIV=$7
MINOR=$(echo "$KV" | cut -d. -f2)
PATCH=${KV##*.}
export CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/megagpu-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

need=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
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
if [ ! -x "$BIN/helm" ] || [ "$(cat "$BIN/.helm-version" 2>/dev/null)" != "$HV k8s-stamped" ]; then
  step "helm $HV"
  # As helm's release build does: its default Kubernetes version is that of its client-go
  # (without it, `helm template` and `helm lint` assume v1.20 and fail a chart's kubeVersion).
  GOFLAGS= go mod download "helm.sh/helm/v3@$HV"
  HGM=$(GOFLAGS= go mod download -json "helm.sh/helm/v3@$HV" | python3 -c 'import sys,json;print(json.load(sys.stdin)["GoMod"])')
  CG=$(awk '$1=="k8s.io/client-go"{print $2}' "$HGM")
  HMAJOR=$(( $(echo "$CG" | cut -d. -f1 | tr -d v) + 1 )) HMINOR=$(echo "$CG" | cut -d. -f2)
  HLD="-s -w -X helm.sh/helm/v3/internal/version.version=$HV -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    HLD="$HLD -X $pkg.k8sVersionMajor=$HMAJOR -X $pkg.k8sVersionMinor=$HMINOR"
  done
  GOFLAGS= GOBIN="$BIN" go install -trimpath -ldflags "$HLD" "helm.sh/helm/v3/cmd/helm@$HV"
  echo "$HV k8s-stamped" > "$BIN/.helm-version"
fi
if [ ! -x "$BIN/containerd" ] || [ ! -x "$BIN/containerd-shim-runc-v2" ] || [ ! -x "$BIN/ctr" ] \
   || [ "$(cat "$BIN/.containerd-version" 2>/dev/null)" != "$CV" ]; then
  step "containerd $CV (containerd, containerd-shim-runc-v2, ctr)"
  mkdir "$WORK/containerd"; cd "$WORK/containerd"
  go mod init local/containerdbins >/dev/null 2>&1
  go mod edit -require="github.com/containerd/containerd/v2@$CV"
  go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CV" -o "$BIN/" \
    github.com/containerd/containerd/v2/cmd/containerd \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  echo "$CV" > "$BIN/.containerd-version"
  cd - >/dev/null
fi
if [ ! -x "$BIN/crictl" ] || [ "$(cat "$BIN/.crictl-version" 2>/dev/null)" != "$CRIV" ]; then
  step "crictl $CRIV"
  GOFLAGS= GOBIN="$BIN" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRIV" "sigs.k8s.io/cri-tools/cmd/crictl@$CRIV"
  echo "$CRIV" > "$BIN/.crictl-version"
fi
step "done: $(ls "$BIN" | tr '\n' ' ')"
