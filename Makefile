# megagpu: two commands do all the set-up (README): `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/megagpu
PYTEST_ARGS ?=

.PHONY: install host-packages shaders binaries image wheelhouse release-test prometheus demo tui-demo chart-crds e2e-kind test unit e2e e2e-scale lint bench bench-devcluster bench-extender bench-extender-live bench-sim bench-tui bench-probe bench-operator dev-up dev-down clean

# Debian packages the real nodes, the image build and the Vulkan workloads need (runc, CNI
# plugins, iptables for kube-proxy, buildah and mmdebstrap for images without a Docker daemon,
# gcc and libc6-dev for the static pause, glslang for the SPIR-V shaders, Mesa's lavapipe as a
# Vulkan device without a GPU). Installed once; the stamp lists them, so adding one installs again.
HOST_PACKAGES := runc containernetworking-plugins iptables conntrack buildah mmdebstrap uidmap \
  gcc libc6-dev glslang-tools mesa-vulkan-drivers libvulkan1
HOST_STAMP := $(CACHE)/host-packages.stamp
$(HOST_STAMP): Makefile
	@if [ "$$(cat $@ 2>/dev/null)" != "$(HOST_PACKAGES)" ]; then \
	  mkdir -p $(CACHE) && apt-get -qq update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends $(HOST_PACKAGES) && \
	  echo "$(HOST_PACKAGES)" > $@; else touch $@; fi

host-packages: $(HOST_STAMP)

# The venv; glslang (a host package) compiles the shaders its editable install builds.
$(STAMP): pyproject.toml | $(HOST_STAMP)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,test]'
	touch $(STAMP)

install: $(STAMP)

# The Vulkan workload's SPIR-V, compiled from its GLSL into megagpu/workload/spirv/ (never
# committed; `pip install .` compiles it the same way through setup.py).
shaders: $(STAMP) $(HOST_STAMP)
	$(BIN)/python -m megagpu.workload.shaders

# The cluster binaries, built once from Go module releases into the version-keyed cache.
binaries: $(STAMP) $(HOST_STAMP)
	$(BIN)/megagpu dev build
	ln -sf "$$($(BIN)/python -c 'from megagpu.devcluster import binaries; print(binaries.binary("kubectl"))')" $(BIN)/kubectl
	ln -sf "$$($(BIN)/python -c 'from megagpu.devcluster import binaries; print(binaries.binary("helm"))')" $(BIN)/helm

# The project's image from the Dockerfile without a Docker daemon (localhost/megagpu:dev, on a
# Debian base made with mmdebstrap), the kube-scheduler and pause images of the pinned release;
# all cached, and loaded into every real node of a running dev cluster.
image: binaries
	$(BIN)/megagpu dev image

# A real Prometheus server (Debian's package, unpacked into the cache; no service is started).
PROM_DIR := $(CACHE)/prometheus-deb12
$(PROM_DIR)/usr/bin/prometheus:
	mkdir -p $(PROM_DIR)/download /tmp/megagpu-apt-lists/partial
	apt-get -qq -oDir::State::Lists=/tmp/megagpu-apt-lists update
	cd $(PROM_DIR)/download && apt-get -qq -oDir::State::Lists=/tmp/megagpu-apt-lists download prometheus
	dpkg -x $(PROM_DIR)/download/prometheus_*.deb $(PROM_DIR)

prometheus: $(PROM_DIR)/usr/bin/prometheus

demo: binaries image
	$(BIN)/megagpu demo

# Where Docker and kind exist (not on the development machine): the image, the chart on a kind
# cluster, `helm test`, and the chart's e2e tests against that cluster.
KIND_CLUSTER ?= megagpu-e2e
IMAGE ?= ghcr.io/megagpu/megagpu:0.1.0
e2e-kind: binaries
	docker build -t $(IMAGE) .
	kind create cluster --name $(KIND_CLUSTER) --kubeconfig $(CACHE)/kind.kubeconfig
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	MEGAGPU_E2E_KUBECONFIG=$(CACHE)/kind.kubeconfig $(BIN)/pytest -m e2e tests/e2e/test_chart.py $(PYTEST_ARGS)
	$(BIN)/helm --kubeconfig $(CACHE)/kind.kubeconfig install megagpu charts/megagpu \
	  -n megagpu-system --create-namespace --wait --timeout 5m
	$(BIN)/helm --kubeconfig $(CACHE)/kind.kubeconfig test megagpu -n megagpu-system --logs
	kind delete cluster --name $(KIND_CLUSTER)

# The chart's CRDs are copies of crds/ (a unit test checks that they match).
chart-crds:
	cp crds/*.yaml charts/megagpu/crds/

# The terminal dashboard on a simulation (no cluster needed).
tui-demo: $(STAMP)
	$(BIN)/megagpu tui --source sim

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check megagpu tests benchmarks

unit: $(STAMP) shaders prometheus
	MEGAGPU_PROMETHEUS=$(PROM_DIR)/usr/bin $(BIN)/pytest -m "not e2e and not release" $(PYTEST_ARGS)

# The Helm chart on a real node of a dev cluster of its own (no other dev cluster may run).
# The e2e and release tests run in a network namespace of their own and under cluster names of
# their own, so they touch no dev cluster of the user's (ports, bridge, iptables, state, policy).
# Nothing they need is outside the machine: the packaging test installs from this wheelhouse.
WHEELHOUSE := $(CACHE)/wheelhouse
$(WHEELHOUSE)/.filled: pyproject.toml
	$(BIN)/pip wheel -q -w $(WHEELHOUSE) '.[kube,probe,tui]' && touch $@
wheelhouse: $(STAMP) $(WHEELHOUSE)/.filled
# A default route to a veth pair that ends in the namespace: the API server of a cluster without real nodes advertises the address
# of the interface that carries it (198.51.100.1 is a documentation address; nothing is sent).
NETNS_SETUP := ip link set lo up && ip link add mgdefault type veth peer name mgdefault-peer \
  && ip link set mgdefault up && ip link set mgdefault-peer up \
  && ip addr add 198.51.100.1/32 dev mgdefault && ip route add default dev mgdefault
ISOLATED = unshare --net -- env MEGAGPU_DEV_CLUSTER=$(1) MEGAGPU_WHEELHOUSE=$(WHEELHOUSE) \
  MEGAGPU_PROMETHEUS=$(PROM_DIR)/usr/bin sh -c '$(NETNS_SETUP) && exec "$$@"' sh \
  $(BIN)/pytest -m "$(2)" $(PYTEST_ARGS)
E2E_TESTS := $(call ISOLATED,megagpu-e2e,e2e and not scale)
RELEASE_TESTS := $(call ISOLATED,megagpu-release,release)
release-test: binaries image prometheus
	$(RELEASE_TESTS)

e2e: binaries image wheelhouse prometheus
	$(E2E_TESTS)

test: binaries shaders image wheelhouse prometheus lint
	@start=$$SECONDS; MEGAGPU_PROMETHEUS=$(PROM_DIR)/usr/bin $(BIN)/pytest -m "not e2e and not release" $(PYTEST_ARGS); rc=$$?; \
	  echo "phase unit tests: $$((SECONDS - start))s"; exit $$rc
	@start=$$SECONDS; $(E2E_TESTS); rc=$$?; \
	  echo "phase e2e tests: $$((SECONDS - start))s"; exit $$rc
	@start=$$SECONDS; $(RELEASE_TESTS); rc=$$?; \
	  echo "phase release tests (the chart on a real node): $$((SECONDS - start))s"; exit $$rc

e2e-scale: binaries image
	MEGAGPU_SCALE=full MEGAGPU_PROMETHEUS=$(PROM_DIR)/usr/bin $(BIN)/pytest -m e2e $(PYTEST_ARGS)

bench-devcluster: binaries
	$(BIN)/python benchmarks/devcluster.py

bench-extender: binaries
	$(BIN)/python benchmarks/extender_load.py --baseline

# Its own dev cluster (megagpu-bench) in a network namespace of its own, like the e2e tests.
bench-extender-live: binaries
	unshare --net -- env MEGAGPU_DEV_CLUSTER=megagpu-bench sh -c '$(NETNS_SETUP) && exec "$$@"' \
	  sh $(BIN)/python benchmarks/extender_live.py

bench-sim: $(STAMP)
	$(BIN)/python benchmarks/sim_speed.py
	$(BIN)/python benchmarks/sim_quality.py

bench-tui: $(STAMP)
	$(BIN)/python benchmarks/tui.py

bench-probe: $(STAMP)
	$(BIN)/python benchmarks/probe.py

# The operator's API load in process (calls per workload, bytes per learning update);
# BENCH_ARGS=--cluster adds the speed rounds on a running dev cluster (megagpu dev up).
bench-operator: $(STAMP)
	$(BIN)/python benchmarks/operator.py $(BENCH_ARGS)

bench: bench-devcluster bench-extender bench-sim bench-tui bench-probe bench-operator

dev-up: binaries
	$(BIN)/megagpu dev up

dev-down: $(STAMP)
	$(BIN)/megagpu dev down

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
