# grpc-bridge image: docker build -t grpc-bridge:0.1.0 .
#
# Two stages: the first builds grpc-bridge's wheel and installs it with its
# dependencies (binary wheels only) into a virtualenv; the second copies just
# that virtualenv onto a clean slim Python, so no build tools, wheel files or
# pip caches reach the final image.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY grpc_bridge ./grpc_bridge
# --only-binary: every dependency ships manylinux wheels, so nothing is compiled
# and the build stage needs no compiler either. Bytecode is compiled once here,
# checked by hash instead of timestamp so it stays valid whatever mtimes the
# copy into the final stage leaves. With the otel extra (the OpenTelemetry SDK
# and OTLP exporters), so the chart's tracing.enabled works with this image;
# the bridge imports none of it while tracing is off (docs/tracing.md). The
# compression extra adds br and zstd answers (docs/compression.md); both ship
# manylinux wheels.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/grpc-bridge \
    && wheel="$(echo /wheels/*.whl)" \
    && /opt/grpc-bridge/bin/pip install --no-cache-dir --no-compile --only-binary=:all: "${wheel}[otel,compression]" \
    && /opt/grpc-bridge/bin/pip uninstall --yes pip \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/grpc-bridge

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="grpc-bridge" \
      org.opencontainers.image.description="Call gRPC services from browsers and plain HTTP clients with JSON" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/grpc-bridge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRPC_BRIDGE_CONFIG=/etc/grpc-bridge/config.yaml
COPY --from=build /opt/grpc-bridge /opt/grpc-bridge
# The default configuration: one upstream on 127.0.0.1:50051, the sidecar case.
# Mount a ConfigMap or file over /etc/grpc-bridge, or override keys with
# GRPC_BRIDGE_* variables (GRPC_BRIDGE_UPSTREAM=host:port, ...).
COPY config/sidecar.yaml /etc/grpc-bridge/config.yaml
# A smoke test of the final image (the package imports, the default config is
# valid) that also writes the bytecode of the standard-library modules the
# bridge imports, in case the base image ships them without.
RUN python -c "import grpc_bridge.app, grpc_bridge.cli, uvloop" \
    && grpc-bridge check-config
# From here on nothing writes bytecode: the root filesystem may be read-only.
ENV PYTHONDONTWRITEBYTECODE=1
# A numeric user (the "nonroot" uid of distroless images) without an entry in
# /etc/passwd: Kubernetes' runAsNonRoot can only verify a numeric USER. Nothing
# is written at run time, so the root filesystem can be read-only.
USER 65532:65532
WORKDIR /
EXPOSE 8080 8081
# Exec form: grpc-bridge is PID 1 and receives SIGTERM itself; it installs
# handlers for SIGTERM and SIGINT (drain, then exit 0), which a PID 1 needs
# because the kernel applies no default action to it. Its only children are
# its own worker processes (workers: N), which it waits for, so nothing is left
# for an init such as tini to reap.
# No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz on the
# admin port itself, and a fixed command here would miss a configured admin.port.
ENTRYPOINT ["grpc-bridge"]
CMD ["serve"]
