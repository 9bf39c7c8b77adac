# ComputeGate operator image: `computegate webhook` (the admission webhook and operator).
# Built by `make kind-demo` as computegate/computegate:<version>, the chart's default image.
FROM python:3.11-slim AS build
WORKDIR /src
# Reproducible: the exact dependency versions of requirements.lock (`make lock`: uv pip compile,
# every file hashed), installed first and verified; then the package alone, without resolving.
COPY requirements.lock ./
RUN python -m venv /opt/computegate \
 && /opt/computegate/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/computegate/bin/pip install --no-cache-dir --no-deps . \
 && /opt/computegate/bin/pip check

FROM python:3.11-slim
LABEL org.opencontainers.image.title="computegate" \
      org.opencontainers.image.description="Admission controller for export-controlled AI compute (ECCN 3A090)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 computegate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin computegate
COPY --from=build /opt/computegate /opt/computegate
ENV PATH=/opt/computegate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 9443 8080
ENTRYPOINT ["computegate"]
CMD ["webhook"]
