# syntax=docker/dockerfile:1
# gateway: the only public entry point: routes /auth, /history and /stats, verifies tokens, rate-limits.
#
# Built by Pants (`./pants package infrastructure/docker:gateway`), whose build context holds the
# service's PEX at src.python.foundation.gateway/gateway.pex (target
# src/python/foundation/gateway:gateway). Built by hand, package the PEX first and use dist/ as the
# context: docker build -f infrastructure/docker/gateway.Dockerfile dist/
#
# Run (the image is read-only-root friendly: only /tmp needs to be writable):
#   docker run --rm --read-only --tmpfs /tmp -p 8000:8000 IMAGE

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
COPY src.python.foundation.gateway/gateway.pex /build/gateway.pex
RUN pex-tools /build/gateway.pex venv --compile /opt/app \
    && /opt/app/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('foundation.gateway') is None)"

# ---- runtime --------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
LABEL org.opencontainers.image.title="foundation-gateway" \
      org.opencontainers.image.description="foundation gateway" \
      org.opencontainers.image.source="infrastructure/docker/gateway.Dockerfile"
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
EXPOSE 8000
# /ready, not /health: the gateway's /health aggregates every service and answers 503 when one
# of them is down, which says nothing about this container. It serves HTTPS when TLS_CERT_FILE
# is set (Granian's certificate options), so the probe follows that setting; it talks to itself
# on loopback, hence no certificate check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/app/bin/python", "-c", "import os, ssl, urllib.request; scheme = 'https' if os.environ.get('TLS_CERT_FILE') else 'http'; urllib.request.urlopen(scheme + '://127.0.0.1:8000/ready', timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["/opt/app/pex"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
