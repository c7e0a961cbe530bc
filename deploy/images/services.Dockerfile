# The control plane's image: `llmct service auth|scheduler|datasets|registry|gateway`, `llmct migrate` and
# `llmct nats sync-users` (deploy/compose.yaml runs each from it). Build from the repository's root:
#
#   docker build -f deploy/images/services.Dockerfile -t llmct-services:0.1.0 .
#
# Pinned: the base images by exact tag (replace a tag by its digest, `name@sha256:...`, once you have pulled it
# from your registry: `docker inspect --format '{{index .RepoDigests 0}}' python:3.11.7-slim-bookworm`), the
# Python packages by deploy/images/constraints.txt (every package at the version the tests ran with), the web
# client's by web/package-lock.json (`npm ci`).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# --- the web client the gateway serves (LLMCT_WEB_DIST) ---------------------------------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# --- the platform's venv, built where compilers may live, copied alone into the runtime -------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY deploy/images/constraints.txt ./
COPY pyproject.toml README.md ./
COPY services services
COPY llmct llmct
RUN python -m venv /opt/llmct \
 && /opt/llmct/bin/pip install --constraint constraints.txt .

# --- the runtime -------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS services
# A dedicated user, never root; /var/lib/llmct is its only writable place (mount a volume there if needed).
RUN groupadd --system --gid 10001 llmct \
 && useradd --system --uid 10001 --gid llmct --home-dir /var/lib/llmct --create-home --shell /usr/sbin/nologin llmct
COPY --from=build /opt/llmct /opt/llmct
COPY --from=web /src/web/dist /opt/llmct/web
ENV PATH=/opt/llmct/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LLMCT_WEB_DIST=/opt/llmct/web \
    LLMCT_BIND_HOST=127.0.0.1
USER llmct
WORKDIR /var/lib/llmct
# Each service's /health (compose sets the port of the one it runs through LLMCT_HEALTH_PORT).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LLMCT_HEALTH_PORT', '8080'), timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["llmct"]
CMD ["--help"]
