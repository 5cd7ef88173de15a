# syntax=docker/dockerfile:1.7
# gaitid serving images. No torch in either: the service runs the exported ONNX model.
#   CPU (default):  docker build -t gaitid:cpu .
#   GPU:            docker build --target gpu -t gaitid:gpu .
# The shipped model (models/gaitid-lmgcs.onnx) is baked in at /models and served by default;
# mount another folder at /models and/or set GAITID_MODEL_PATH to serve another model (see
# README, "Deployment").

ARG PYTHON_VERSION=3.11

# ---- build: one wheel of the project, no dependencies resolved here ---------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gaitid ./gaitid
COPY service ./service
COPY migrations ./migrations
COPY model ./model
COPY training ./training
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- cpu: onnxruntime + faiss-cpu, non-root ----------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GAITID_DATA_DIR=/var/lib/gaitid \
    GAITID_MODEL_PATH=/models/gaitid-lmgcs.onnx \
    GAITID_HOST=0.0.0.0 \
    GAITID_PORT=8000
RUN useradd --system --uid 10001 --home-dir /var/lib/gaitid --create-home gaitid \
    && mkdir -p /models
# Exact pins (requirements/serve-cpu.txt, generated from the tested environment; CI installs
# the same file into a fresh virtualenv and runs the API from it), then the project alone.
COPY requirements/serve-cpu.txt /tmp/serve-cpu.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir -r /tmp/serve-cpu.txt \
    && pip install --no-cache-dir --no-deps /wheels/gaitid-*.whl \
    && rm -rf /wheels /tmp/serve-cpu.txt
COPY models/ /models/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('GAITID_PORT','8000')}/readyz\", timeout=4); sys.exit(0)"]
CMD ["gaitid", "serve"]

# ---- gpu: onnxruntime-gpu + faiss-gpu on a CUDA runtime base; falls back to CPU ----------
# onnxruntime-gpu >= 1.31 loads CUDA 13 + cuDNN 9 from the system (checked: without them it
# logs "Require cuDNN 9.* and CUDA 13.*" and runs on the CPU), hence a CUDA 13 cuDNN base;
# faiss-gpu-cu12 brings its own CUDA 12 runtime libraries as pip dependencies.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    GAITID_DATA_DIR=/var/lib/gaitid \
    GAITID_MODEL_PATH=/models/gaitid-lmgcs.onnx \
    GAITID_HOST=0.0.0.0 \
    GAITID_PORT=8000 \
    GAITID_DEVICE=auto
# The base image tag is pinned; its python3 is whatever that Ubuntu release ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --home-dir /var/lib/gaitid --create-home gaitid \
    && mkdir -p /models
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/gaitid-*.whl)[gpu]" && rm -rf /wheels
COPY models/ /models/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os,sys,urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('GAITID_PORT','8000')}/readyz\", timeout=4); sys.exit(0)"]
CMD ["gaitid", "serve"]

# The last stage is what a plain `docker build` produces: keep the CPU image the default.
FROM cpu AS default
