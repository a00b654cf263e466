# The worker image: headless OpenCV, the TFLite runtime (inside tensorflow-cpu), no training data.
FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
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
RUN mkdir -p /data/fer && chown fer:fer /data/fer
USER fer
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["fer", "serve", "--source", "0", "--http", "0.0.0.0:8000"]
