# syntax=docker/dockerfile:1
# The operator image; it also runs the backup engine (backup Jobs use it), hence the
# PostgreSQL client tools. Build with `make image` (needs a Docker engine).
#
# - the Python dependencies are exactly pyproject.toml's, pinned by constraints.txt
#   (tests/unit/test_dockerfile.py checks that no list of its own creeps in);
# - the final stage has no compiler, no pip cache and no build files, runs as a numeric
#   non-root user and works on a read-only root filesystem (the chart mounts /tmp only);
# - pg_dump/pg_restore come from the PostgreSQL project's own Debian repository, at the newest
#   major: pg_dump reads servers of its own major and older, so one client serves every
#   supported server (Azure Database for PostgreSQL flexible server 13 to 17);
# - point-in-time recovery replays a server's WAL archive with pgBackRest on a temporary
#   PostgreSQL server of the archive's major: pgbackrest and the server binaries of
#   PITR_PG_MAJORS (no cluster is created; the operator starts its own on scratch space);
# - no HEALTHCHECK: Kubernetes probes Kopf's liveness endpoint instead.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
# The product only: the local stack and test harness (operator/odoo_devstack) stay out.
COPY operator/odoo_operator ./operator/odoo_operator
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG PG_MAJOR=17
ARG PITR_PG_MAJORS="15 16 17"
LABEL org.opencontainers.image.title="odoo-operator" \
      org.opencontainers.image.description="Kubernetes operator for finance-grade Odoo tenants" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/tenantops/odoo-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ADD --chmod=644 https://www.postgresql.org/media/keys/ACCC4CF8.asc /etc/apt/keyrings/postgresql.asc
# Debian's own client packages move with the distribution; the client's major is pinned above.
# The server packages' list is split into words on purpose (one package per major).
# hadolint ignore=DL3008,SC2046
RUN echo "deb [signed-by=/etc/apt/keyrings/postgresql.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && mkdir -p /etc/postgresql-common \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" pgbackrest \
      $(for major in ${PITR_PG_MAJORS}; do echo "postgresql-${major}"; done) \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    ODOO_OPERATOR_PG_BINDIR=/usr/lib/postgresql/${PG_MAJOR}/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
ENTRYPOINT ["odoo-operator"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
