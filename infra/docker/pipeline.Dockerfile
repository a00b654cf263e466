# The pipeline image: the Prefect flows, training, and the MLflow server (with PostgreSQL support).
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 fer
WORKDIR /opt/fer
COPY pyproject.toml README.md requirements.lock ./
COPY fer_core fer_core
COPY fer_cli fer_cli
COPY flows flows
COPY serving serving
RUN pip install --no-deps --require-hashes -r requirements.lock && pip check && pip install --no-deps .
# Named volumes start as copies of these folders, so they belong to fer, not root.
RUN mkdir -p /data/fer /mlartifacts && chown fer:fer /data/fer /mlartifacts
USER fer
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import fer_core, flows" || exit 1
CMD ["fer", "--help"]
