# syntax=docker/dockerfile:1
# EventoDB server image: the wheel is built in the first stage with the commands README.md
# documents ("Install from source"), and installed into a slim runtime that runs as a non-root
# user. Configuration is the EVENTODB_* environment (docs/CONFIGURATION.md); by default the data
# lives in SQLite files under /data, and EVENTODB_DB_URL=postgres://... switches to Postgres.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir dist .

FROM python:${PYTHON_VERSION}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1 \
    EVENTODB_PORT=8080 \
    EVENTODB_DATA_DIR=/data \
    EVENTODB_LOG_FORMAT=json
WORKDIR /opt/eventodb
# 'eventodb[server]' only adds the extra's dependencies: the project itself is the wheel beside it
# (DL3013 would pin a version that changes with every release).
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/src/dist,target=dist \
    python -m pip install dist/eventodb-*.whl 'eventodb[server]'
# A numeric user, so that runtimes enforcing "not root" (Kubernetes runAsNonRoot) can verify it.
RUN groupadd --system --gid 10001 eventodb \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin eventodb \
    && mkdir /data && chown 10001:10001 /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# Healthy while /ready answers 200: the server is up and its store passes its checks (python:
# the slim image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('EVENTODB_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["eventodb"]
CMD ["serve"]
