# syntax=docker/dockerfile:1
# history_service: each user's activity timeline.
#
# Built by Pants (`./pants package infrastructure/docker:history_service`), whose build context holds the
# service's PEX at src.python.foundation.history_service/history_service.pex (target
# src/python/foundation/history_service:history_service). Built by hand, package the PEX first and use dist/ as the
# context: docker build -f infrastructure/docker/history_service.Dockerfile dist/
#
# Run (the image is read-only-root friendly: only /tmp needs to be writable):
#   docker run --rm --read-only --tmpfs /tmp -p 8002:8002 IMAGE
#   docker run --rm --read-only --tmpfs /tmp -e DATABASE_URL=... IMAGE migrate

# ---- build: turn the PEX into a plain, byte-compiled virtualenv ------------------------------
# A venv starts faster than a zipped PEX and never unpacks anything at run time, so the running
# container needs no writable PEX_ROOT. `pex-tools` works on any PEX (no --include-tools needed);
# its version is the one Pants 2.17 builds with. Both stages use the same base image, so the
# venv's interpreter symlink (/usr/local/bin/python3.11) resolves in the runtime stage too.
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1 AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m pip install --no-cache-dir "pex==2.1.137"
COPY src.python.foundation.history_service/history_service.pex /build/history_service.pex
RUN pex-tools /build/history_service.pex venv --compile /opt/app \
    && /opt/app/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('foundation.history_service') is None)"

# ---- runtime --------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
LABEL org.opencontainers.image.title="foundation-history-service" \
      org.opencontainers.image.description="foundation history_service" \
      org.opencontainers.image.source="infrastructure/docker/history_service.Dockerfile"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/foundation
COPY --from=build /opt/app /opt/app
# /var/lib/foundation is the one other writable place, for a volume that keeps development-only
# state (e.g. generated development keys); production runs without it.
# Nothing else is written outside /tmp: no bytecode, no PEX cache, HOME for libraries that want one.
ENV PATH="/opt/app/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PEX_ROOT=/tmp/.pex \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /opt/app
USER 10001:10001
EXPOSE 8002
# Liveness only (GET /health); readiness (/ready: database + Redis) is the orchestrator's job.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/app/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/health', timeout=4)"]
ENTRYPOINT ["/opt/app/pex"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8002"]
