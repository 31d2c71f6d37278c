# One image for every megagpu component (operator, extender, probe, uninstall hook);
# kube-scheduler is the upstream image. Build: docker build -t ghcr.io/megagpu/megagpu:0.1.0 .
# The base is pinned to an exact release tag; to pin it by digest as well, pass
# --build-arg PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:<digest from `docker pull`>.
# `make image` builds this same file without a Docker daemon on a Debian base of its own
# (python3, python3-venv, libvulkan1; megagpu/devcluster/images.py).
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm
# The -gpu variant, for the probe on GPU nodes (its CUDA benchmarks; Mesa's Vulkan drivers for
# AMD and Intel cards): docker build --build-arg EXTRAS=kube,probe,gpu
#   --build-arg GPU_PACKAGES=mesa-vulkan-drivers -t ghcr.io/megagpu/megagpu:0.1.0-gpu .
ARG EXTRAS=kube,probe
ARG GPU_PACKAGES=

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
# glslangValidator compiles the Vulkan workload's GLSL shaders to SPIR-V when the package is
# built (setup.py); a base that has it already needs no package index.
RUN dpkg -s glslang-tools >/dev/null 2>&1 || { apt-get update \
 && apt-get install -y --no-install-recommends glslang-tools \
 && rm -rf /var/lib/apt/lists/*; }
# A venv works on both bases (Debian's python refuses system-wide installs: PEP 668).
RUN python3 -m venv /opt/megagpu \
 && /opt/megagpu/bin/pip install --no-cache-dir "setuptools>=68" wheel
WORKDIR /src
COPY pyproject.toml README.md setup.py ./
# The dependencies in a layer of their own (a stub package stands in for the source), so that a
# source change rebuilds only the last step, without the package index.
RUN mkdir megagpu && touch megagpu/__init__.py \
 && /opt/megagpu/bin/pip install --no-cache-dir ".[${EXTRAS}]" \
 && rm -rf megagpu build ./*.egg-info
COPY megagpu ./megagpu
RUN /opt/megagpu/bin/pip install --no-cache-dir --no-deps --no-build-isolation ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
ARG GPU_PACKAGES
# The Vulkan loader, for the probe's vulkan backend (the ICD comes from the host); a base that
# has it already needs no package index.
RUN dpkg -s libvulkan1 ${GPU_PACKAGES} >/dev/null 2>&1 || { apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 ${GPU_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*; }
COPY --from=build /opt/megagpu /opt/megagpu
ENV PATH=/opt/megagpu/bin:$PATH
RUN groupadd --gid 10001 megagpu && useradd --uid 10001 --gid 10001 --no-create-home megagpu
USER 10001:10001
ENTRYPOINT ["megagpu"]
CMD ["--help"]
