# The engine image the docker runtime runs one container per job in (LLMCT_DOCKER_IMAGE; docs/docker.md, "A
# production engine image"): LLaMA-Factory at the version engine/requirements.txt pins, every other package at
# engine/constraints.txt's version but torch, which comes with the CUDA base image. Three variants, one target each:
#
#   docker build -f deploy/images/engine.Dockerfile --target base -t llmct-engine:0.9.5 .
#   docker build -f deploy/images/engine.Dockerfile --target bnb  -t llmct-engine:0.9.5-bnb .   # QLoRA (4/8-bit)
#   docker build -f deploy/images/engine.Dockerfile --target gptq -t llmct-engine:0.9.5-gptq .  # GPTQ export/serve
#
# What the runtime needs from it: `llamafactory-cli` on PATH, no ENTRYPOINT (the agent passes the whole command),
# a real /sbin (docker-init is mounted there for init=True), psutil (the engine's own resource reports). Pick the
# base image whose CUDA your hosts' driver supports; its torch must be the version engine/constraints.txt pins.

ARG CUDA_TORCH_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime

FROM ${CUDA_TORCH_IMAGE} AS base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 DISABLE_VERSION_CHECK=1
COPY engine/requirements.txt engine/constraints.txt /tmp/engine/
# The constraints without their torch lines: they pin this machine's CPU build, the base image brings CUDA's.
# Kept in the image: the variants below install with it too, so nothing already there changes version.
RUN grep -v -E '^(torch|torchaudio|torchvision)==' /tmp/engine/constraints.txt > /etc/engine-constraints.txt \
 && pip install --constraint /etc/engine-constraints.txt -r /tmp/engine/requirements.txt psutil==7.2.2 \
 && (pip uninstall -y torchvision || true) \
 && python -c "import psutil, llamafactory" \
 && rm -rf /tmp/engine
# no ENTRYPOINT: the agent passes the whole command (`llamafactory-cli train ...`)

# QLoRA: 4-bit and 8-bit loading (quantization_bit in a job's config).
FROM base AS bnb
RUN pip install --constraint /etc/engine-constraints.txt bitsandbytes==0.50.2 && python -c "import bitsandbytes, psutil"

# GPTQ: exporting (export_quantization_bit) and serving GPTQ models.
FROM base AS gptq
RUN pip install --constraint /etc/engine-constraints.txt optimum==2.3.0 gptqmodel==7.7.0 && python -c "import optimum, gptqmodel, psutil"
