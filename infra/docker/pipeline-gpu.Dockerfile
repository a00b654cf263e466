# The pipeline image for GPU training (Vertex AI through Prefect's vertex-ai work pool): the CPU pipeline
# image's locked install, then the same TensorFlow release built with CUDA (its CUDA libraries come as
# wheels; the NVIDIA driver comes from the Vertex AI host). TF_VERSION must equal the lock's tensorflow-cpu
# (tests/test_infra.py checks it); that one package is the only install not taken from requirements.lock.
FROM python:3.11.10-slim-bookworm
ARG TF_VERSION=2.21.0
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
RUN pip install --no-deps --require-hashes -r requirements.lock && pip check && pip install --no-deps . \
    && pip uninstall -y tensorflow-cpu && pip install "tensorflow[and-cuda]==${TF_VERSION}" "prefect-gcp[aiplatform]>=0.6.20,<0.7"
# Named volumes start as copies of these folders, so they belong to fer, not root.
RUN mkdir -p /data/fer && chown fer:fer /data/fer
USER fer
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import fer_core, flows, tensorflow" || exit 1
CMD ["fer", "--help"]
