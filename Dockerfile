# One image for every livetriage service; the command picks the role:
#   docker run IMAGE ingest | triage | notifier | migrate | simulate ... | schema
# With no command it runs `livetriage up` (all services in one process; it embeds a
# broker and a database when KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are unset), e.g.
#   docker run --rm -p 8080:8080 IMAGE
# Production shape (separate containers, real Kafka and Postgres): docker-compose.yml.

# ---- build: install the project and its dependencies into a virtualenv -------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a source change reuses this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (.dockerignore keeps .venv, .git, caches and tests out).
COPY . .
RUN pip install . && python -m compileall -q /opt/venv

# ---- runtime ----------------------------------------------------------------------
FROM python:3.11-slim

RUN groupadd --system --gid 10001 livetriage \
    && useradd --system --uid 10001 --gid livetriage \
        --home-dir /var/lib/livetriage --create-home --shell /usr/sbin/nologin livetriage

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIVETRIAGE_DATA_DIR=/var/lib/livetriage/data \
    LIVETRIAGE_API_HOST=0.0.0.0

WORKDIR /var/lib/livetriage
USER 10001:10001

# 8080: notifier HTTP API (/v1/incidents, /healthz, /readyz, /metrics)
# 9100: Prometheus metrics of standalone ingest/triage (set LIVETRIAGE_METRICS_PORT=9100)
EXPOSE 8080 9100

ENTRYPOINT ["livetriage"]
CMD ["up"]
