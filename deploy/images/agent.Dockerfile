# A GPU host's agent in a container (an alternative to the systemd unit deploy/systemd/llmct-agent.service).
# It runs each job in a container of an engine image (engine.Dockerfile) through the host's Docker, so it needs
# the host's socket, the shared storage at the same path as on the host (or LLMCT_STORAGE_MODE=objects), and the
# NVIDIA runtime for pynvml (`--gpus all`). Build from the repository's root, after the services image:
#
#   docker build -f deploy/images/agent.Dockerfile --build-arg SERVICES_IMAGE=llmct-services:0.1.0 -t llmct-agent:0.1.0 .
#   docker run -d --restart unless-stopped --name llmct-agent --gpus all --env-file /etc/llmct/agent.env \
#     -v /var/run/docker.sock:/var/run/docker.sock -v /srv/cloud-llm:/srv/cloud-llm \
#     -v /var/lib/llmct:/var/lib/llmct -v /etc/llmct/tls:/etc/llmct/tls:ro llmct-agent:0.1.0
#
# The same venv as the services (psutil, nvidia-ml-py and the Docker SDK are platform dependencies, pinned by
# constraints.txt): an agent and the control plane of one release always agree on the contracts.

ARG SERVICES_IMAGE=llmct-services:0.1.0
FROM ${SERVICES_IMAGE} AS agent
# The agent reaches the host's Docker through its socket: its group owns it there. Give the group id at build
# time (`stat -c %g /var/run/docker.sock` on the host) or run with `--group-add`.
USER root
ARG DOCKER_GID=999
RUN groupadd --gid ${DOCKER_GID} docker-host 2>/dev/null || true \
 && usermod --append --groups ${DOCKER_GID} llmct
USER llmct
ENV LLMCT_RUNTIME=docker \
    LLMCT_STATE_PATH=/var/lib/llmct/state
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LLMCT_AGENT_PORT', '8105'), timeout=4)"
# `llmct agent join <gateway> <token>` once (its answer is kept in /var/lib/llmct), then `agent start` from it;
# or set NATS_URL, NATS_USER, NATS_PASSWORD, LLMCT_AGENT_ID and run `service agent`.
ENTRYPOINT ["llmct"]
CMD ["agent", "start"]
