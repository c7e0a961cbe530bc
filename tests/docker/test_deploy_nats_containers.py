"""deploy/compose.yaml's NATS nodes in a real Docker engine (issue 16, item 5). No registry is reachable, so the
`nats` image is made here: `docker import` of a rootfs holding the platform's own nats-server (static) and a static
busybox (the shell and wget the compose file's entrypoint and health check use). The three containers run with the
compose file's entrypoint, command and health check, deploy/nats/'s files mounted where the compose file mounts
them, on a network of their own where each resolves its peers by name: a node waits for its users file (the
sidecar's first sync), then the three form the cluster over TLS and Docker calls them healthy; a service connects
with the CA and JetStream keeps its streams at 3 replicas."""

from __future__ import annotations

import asyncio
import io
import random
import shutil
import tarfile
import time
import uuid
from pathlib import Path

import docker.types
import pytest
import yaml

from llmct.embedded import nats_server_binary
from services.common.bus import close_bus, connect_bus, ensure_streams, tls_context
from services.common.contracts import STREAMS
from services.common.nats_auth import SERVICE_USER
from tests.integration.deploy.helpers import DEPLOY_NATS, NODE_NAMES, SERVICES_PASSWORD, make_pki

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000


def nats_rootfs() -> bytes:
    """/usr/local/bin/nats-server, /bin/busybox with its sh, wget, sleep, test; the folders the node uses."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "sbin", "usr", "usr/local", "usr/local/bin", "etc", "etc/nats", "var", "var/run",
                     "var/run/nats", "var/lib", "var/lib/nats", "proc", "sys", "dev"):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        tar.add(shutil.which("busybox") or "/bin/busybox", "bin/busybox")
        tar.add(nats_server_binary(), "usr/local/bin/nats-server")
        for applet in ("sh", "wget", "sleep", "test", "["):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


@pytest.fixture
def nats_image(docker_client):
    tag = f"llmct-test-nats:{uuid.uuid4().hex[:8]}"
    repository, _, version = tag.partition(":")
    docker_client.api.import_image(src=nats_rootfs(), repository=repository, tag=version,
                                   changes=["ENV PATH=/usr/local/bin:/bin"])  # fmt: skip
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.fixture
def network(docker_client):
    """A bridge network of its own (the engine has no default bridge), with a subnet unlikely to be taken."""
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=f"{subnet}.0/24", gateway=f"{subnet}.1")])
    created = docker_client.networks.create(f"llmct-deploy-{uuid.uuid4().hex[:8]}", driver="bridge", ipam=ipam)
    yield created, subnet
    created.remove()


def health(docker_client, container_id: str) -> str:
    return docker_client.api.inspect_container(container_id)["State"].get("Health", {}).get("Status", "none")


def start_node(docker_client, image: str, service: dict, node: str, net: str, ips: dict[str, str], binds: dict) -> str:
    check = service["healthcheck"]
    host_config = docker_client.api.create_host_config(binds=binds, extra_hosts=dict(ips))
    networking = docker_client.api.create_networking_config(
        {net: docker_client.api.create_endpoint_config(ipv4_address=ips[node])}
    )
    container = docker_client.api.create_container(
        image,
        entrypoint=[part.replace("$$", "$") for part in service["entrypoint"]],  # compose's escape of a literal $
        command=service["command"],
        host_config=host_config,
        networking_config=networking,
        labels={"llmct-test": "deploy"},
        healthcheck={"test": check["test"], "interval": 1 * NS, "timeout": 5 * NS, "retries": check["retries"]},
    )
    docker_client.api.start(container["Id"])
    return container["Id"]


async def test_the_compose_nats_nodes_wait_for_their_users_then_cluster_over_tls(
    docker_client, nats_image, network, tmp_path
):
    net, subnet = network
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    ips = {node: f"{subnet}.{10 + i}" for i, node in enumerate(NODE_NAMES)}
    tls = make_pki(tmp_path / "pki", ips=tuple(ips.values()))
    node_tls = tmp_path / "node-tls"
    node_tls.mkdir()
    for source, target in (("ca.pem", "ca.pem"), ("server.pem", "server.pem"), ("server-key.pem", "server-key.pem")):
        shutil.copy(tls / source, node_tls / target)
    containers = []
    try:
        for node in NODE_NAMES:
            etc, store = tmp_path / node / "etc", tmp_path / node / "data"
            etc.mkdir(parents=True)
            store.mkdir()
            for name in ("nats.conf", f"{node}.conf"):
                shutil.copy(DEPLOY_NATS / name, etc / name)
            binds = {
                str(etc): {"bind": "/etc/nats", "mode": "rw"},
                str(node_tls): {"bind": "/etc/nats/tls", "mode": "ro"},
                str(store): {"bind": "/var/lib/nats", "mode": "rw"},
            }
            service = compose["services"][node]
            containers.append(start_node(docker_client, nats_image, service, node, net.name, ips, binds))
        await asyncio.sleep(3)  # no users file yet: the nodes wait, and are not healthy
        assert all(health(docker_client, c) != "healthy" for c in containers)
        assert all(docker_client.api.inspect_container(c)["State"]["Running"] for c in containers)
        for node in NODE_NAMES:  # what each node's nats-N-users sidecar writes first
            shutil.copy(DEPLOY_NATS / "auth.conf", tmp_path / node / "etc" / "auth.conf")
        deadline = time.monotonic() + 90
        while not all(health(docker_client, c) == "healthy" for c in containers):
            assert time.monotonic() < deadline, [docker_client.api.logs(c)[-2000:] for c in containers]
            await asyncio.sleep(1)
        url = ",".join(f"tls://{ip}:4222" for ip in ips.values())
        nc = await connect_bus(url, "deploy-docker", [], user=SERVICE_USER, password=SERVICES_PASSWORD,
                               tls=tls_context(str(tls / "ca.pem")))  # fmt: skip
        try:
            js = nc.jetstream()
            await ensure_streams(js, replicas=3)
            for config in STREAMS:
                info = await js.stream_info(config.name or "")
                assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        finally:
            await close_bus(nc)
    finally:
        for container in containers:
            docker_client.api.remove_container(container, force=True)
