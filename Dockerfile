# The serverless fine-tuning worker image: `finetuning worker` on a CUDA build of torch (docs/worker.md).
#   docker build -t finetuning-worker .
# The repository's CI cannot build images (no container runtime there); tests/worker/test_image.py checks this file.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /opt/finetuning
COPY pyproject.toml README.md ./
COPY src ./src

# The package with the worker extra (runpod) over the base image's CUDA torch, which satisfies the package's torch
# range and so stays; the check fails the build if an install replaced it by a CPU-only build.
RUN python -m pip install ".[worker]" \
    && python -c "import torch, runpod, finetuning.worker.handler; assert torch.version.cuda, 'torch has no CUDA'"

# Outputs go to the endpoint's network volume when one is mounted (/runpod-volume/fine-tuning), else ./worker-runs;
# FINETUNING_WORKER_ROOT chooses another place.
WORKDIR /workspace
CMD ["finetuning", "worker"]
