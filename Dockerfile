# syntax=docker/dockerfile:1
# One Dockerfile, one target per component (admin, producer, consumer, client). They share every
# layer but the last, so building all four costs one dependency install.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project from its own pyproject into a self-contained venv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY pedidos ./pedidos
COPY client ./client
COPY producer ./producer
COPY consumer ./consumer
COPY admin ./admin
# A regular (non-editable) install: the runtime stage needs only /opt/venv, not /src.
RUN --mount=type=cache,target=/root/.cache/pip pip install -c constraints.txt .

# --- runtime: the venv on a clean slim image, run as an unprivileged user ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 pedidos \
    && useradd --system --uid 10001 --gid pedidos --home-dir /app --shell /usr/sbin/nologin pedidos \
    && install --directory --owner pedidos --group pedidos /app
COPY --from=build /opt/venv /opt/venv
# Settings come from the environment only: no .env is copied (see .dockerignore).
WORKDIR /app
USER pedidos:pedidos

FROM runtime AS admin
ENTRYPOINT ["python", "-m", "admin"]
CMD ["setup"]

FROM runtime AS producer
EXPOSE 50051
ENTRYPOINT ["python", "-m", "producer"]

FROM runtime AS consumer
ENTRYPOINT ["python", "-m", "consumer"]

# Arguments after the image name go to the client: `docker compose run --rm client --count 20 ...`
FROM runtime AS client
ENTRYPOINT ["python", "-m", "client"]
