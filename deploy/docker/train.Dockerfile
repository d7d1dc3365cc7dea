# The training image of the chart deploy/helm/recsys-training (training.image.repository):
# recsys with its whole training stack on a CUDA torch base. The Bento image only serves.
#   docker build -f deploy/docker/train.Dockerfile -t REGISTRY/recsys-train:TAG .
# For CPU-only training (training.gpusPerNode=0), a python:3.11-slim base works too:
#   --build-arg BASE=python:3.11-slim --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 OMP_WAIT_POLICY=PASSIVE \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN if ! command -v python3.11 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends software-properties-common \
      && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
      && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3.11 -m venv /opt/venv
# torch first and pinned, from the index that matches the base (CUDA or CPU wheels).
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX}
WORKDIR /opt/recsys
COPY pyproject.toml README.md ./
COPY src ./src
COPY conf ./conf
# Editable: recsys finds its Hydra configs in /opt/recsys/conf.
RUN pip install -e . && python -c "import recsys.train"
# The chart runs pods as uid/gid 1034 (podSecurityContext) with a read-only root filesystem (runs
# write to the PVC); OpenShift assigns its own uid instead (docs/CHART.md).
RUN groupadd -g 1034 recsys && useradd -u 1034 -g 1034 -m recsys
USER 1034
