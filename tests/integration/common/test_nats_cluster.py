"""A 3-node NATS cluster (issue 16, item 1): every platform stream and bucket at 3 replicas, and a client with
every node's URL that rides out the loss of any node, the stream's leader included, losing nothing accepted."""

import asyncio
import json
import time
import urllib.request

import pytest

from llmct.embedded import NatsCluster
from services.common import objects
from services.common.bus import close_bus, connect_bus, ensure_streams, urls_without_credentials
from services.common.contracts import STREAMS, Buckets

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path):
    nodes = NatsCluster.local(3, tmp_path / "cluster")
    nodes.start(log_folder=tmp_path)
    yield nodes
    nodes.stop()


def stream_leader(cluster: NatsCluster, stream: str) -> str:
    """The name of the node leading `stream`, from a running node's monitor."""
    node = next(n for n in cluster.nodes if n.process and n.process.poll() is None)
    url = f"http://127.0.0.1:{node.monitor_port}/jsz?streams=true"
    with urllib.request.urlopen(url, timeout=2) as response:
        found = json.load(response)
    for account in found.get("account_details") or []:
        for info in account.get("stream_detail") or []:
            if info["name"] == stream:
                return info["cluster"]["leader"]
    raise LookupError(stream)


async def publish_until_accepted(js, subject: str, payload: bytes, msg_id: str, within_s: float) -> float:
    """Publish (deduplicated by msg id) until the stream accepts; returns how long it took."""
    start = time.monotonic()
    while True:
        try:
            await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=2)
            return time.monotonic() - start
        except Exception:  # no leader yet, timed out, reconnecting: retry as a client would
            if time.monotonic() - start > within_s:
                raise
            await asyncio.sleep(0.2)


async def test_streams_and_buckets_are_replicated_on_every_node(cluster):
    nc = await connect_bus(cluster.url, "cluster-test", [])
    try:
        js = nc.jetstream()
        await ensure_streams(js, replicas=3)
        await objects.ensure_buckets(js, replicas=3)
        for config in STREAMS:
            info = await js.stream_info(config.name or "")
            assert info.config.num_replicas == 3, config.name
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2, config.name
        for bucket in Buckets.ALL:
            assert (await js.stream_info(f"OBJ_{bucket}")).config.num_replicas == 3
    finally:
        await close_bus(nc)


async def test_one_node_grown_to_three_gets_its_streams_replicated(cluster):
    nc = await connect_bus(cluster.url, "cluster-test", [])
    try:
        js = nc.jetstream()
        await ensure_streams(js, replicas=1)
        await objects.ensure_buckets(js, replicas=1)
        assert (await js.stream_info("LOGS")).config.num_replicas == 1
        await ensure_streams(js, replicas=3)  # the next start with LLMCT_NATS_REPLICAS=3
        await objects.ensure_buckets(js, replicas=3)
        assert (await js.stream_info("LOGS")).config.num_replicas == 3
        assert (await js.stream_info(f"OBJ_{Buckets.OUTPUTS}")).config.num_replicas == 3
    finally:
        await close_bus(nc)


async def test_losing_the_stream_leaders_node_loses_nothing(cluster, tmp_path):
    """kill -9 the node leading JOB_EVENTS while a client publishes: the client (given every node's URL) goes on
    after a new leader is elected, every accepted message is there once, and the killed node catches up."""
    nc = await connect_bus(cluster.url, "cluster-test", [])
    try:
        js = nc.jetstream()
        await ensure_streams(js, replicas=3)
        await objects.ensure_buckets(js, replicas=3)
        source = tmp_path / "model.bin"
        source.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: three chunks
        await objects.put_file(js, Buckets.MODELS, "m/model.bin", source)

        for n in range(20):
            await js.publish("job.status.before", f"{n}".encode(), headers={"Nats-Msg-Id": f"before-{n}"})
        leader = cluster.node_named(stream_leader(cluster, "JOB_EVENTS"))
        leader.kill()

        waits = []
        for n in range(20):
            waits.append(await publish_until_accepted(js, "job.status.after", f"{n}".encode(), f"after-{n}", 30))
        assert stream_leader(cluster, "JOB_EVENTS") != leader.server_name

        info = await js.stream_info("JOB_EVENTS")
        assert info.state.messages == 40  # each accepted once, none lost, none twice
        fetched = await objects.fetch(js, Buckets.MODELS, "m/model.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == source.read_bytes() and fetched.size == 2 * 1024 * 1024

        cluster.restart(leader, log_file=tmp_path / "restarted.log")
        cluster.wait_ready()

        def caught_up() -> bool:
            url = f"http://127.0.0.1:{leader.monitor_port}/jsz?streams=true"
            with urllib.request.urlopen(url, timeout=2) as response:
                details = json.load(response).get("account_details") or []
            counts = [
                s["state"]["messages"]
                for a in details
                for s in a.get("stream_detail") or []
                if s["name"] == "JOB_EVENTS"
            ]
            return counts == [40]

        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(caught_up):
            assert time.monotonic() < deadline, "the restarted node did not catch up within 30 s"
            await asyncio.sleep(0.5)
        print(f"\nleader {leader.server_name} killed: first publish accepted again after {max(waits):.2f} s")
    finally:
        await close_bus(nc)


def test_agents_and_joined_hosts_get_every_node_without_credentials(cluster):
    env = cluster.add_agent("gpu-a")
    assert env["NATS_URL"].count("nats://") == 3 and "@" not in env["NATS_URL"]
    assert urls_without_credentials(cluster.url) == env["NATS_URL"].split(",")
    for node in cluster.nodes:
        assert "gpu-a" in node.agents
