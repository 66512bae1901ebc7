# syntax=docker/dockerfile:1
# The operator image; it also runs the backup engine, hence the PostgreSQL client tools.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="odoo-operator" \
      org.opencontainers.image.description="Kubernetes operator for finance-grade Odoo tenants" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["odoo-operator"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
