# One image for every megagpu component (operator, extender, probe, uninstall hook);
# kube-scheduler is the upstream image. Build: docker build -t ghcr.io/megagpu/megagpu:0.1.0 .
# The base is pinned to an exact release tag; to pin it by digest as well, pass
# --build-arg PYTHON_IMAGE=python:3.11.10-slim-bookworm@sha256:<digest from `docker pull`>.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY megagpu ./megagpu
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[kube,probe]"

FROM ${PYTHON_IMAGE}
# The Vulkan loader, for the probe's vulkan backend (the ICD comes from the host).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels megagpu[kube,probe] && rm -rf /wheels
RUN groupadd --gid 10001 megagpu && useradd --uid 10001 --gid 10001 --no-create-home megagpu
USER 10001:10001
ENTRYPOINT ["megagpu"]
CMD ["--help"]
