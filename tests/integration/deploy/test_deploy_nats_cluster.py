"""deploy/nats/ run for real (issue 16, item 5): three nats-servers from the very config files an operator installs
form one cluster over TLS routes authenticated by certificate, JetStream keeps every platform stream at 3
replicas, and clients must speak TLS and trust the platform's CA; the per-role users of auth.conf hold."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time

import nats
import nats.errors
import pytest

from llmct.agentjoin import JoinFailed, wait_for_login
from llmct.embedded import free_port, nats_server_binary
from llmct.usersync import UsersSync
from services.common.bus import close_bus, connect_bus, ensure_streams, tls_context
from services.common.contracts import STREAMS, Subjects
from services.common.nats_auth import SERVICE_USER
from services.common.settings import settings_from_env
from services.common.startup import nats_problem
from tests.helpers import unique
from tests.integration.deploy.helpers import SERVICES_PASSWORD, DeployCluster, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("deploy-pki") / "tls")


@pytest.fixture(scope="module")
def cluster(pki, tmp_path_factory):
    nodes = DeployCluster(tmp_path_factory.mktemp("deploy-nats"), pki).start()
    yield nodes
    nodes.stop()


def service_tls(pki, **more: str):
    """The TLS context a service builds from its settings (NATS_TLS_CA, NATS_TLS_CERT, NATS_TLS_KEY)."""
    settings = settings_from_env({"NATS_TLS_CA": str(pki / "ca.pem"), **more})
    return tls_context(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)


async def refused(url: str, **options) -> Exception | None:
    """The error a first connection gets, or None when it got in."""
    try:
        nc = await nats.connect(
            url.split(","), allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, **options
        )
    except Exception as exc:  # noqa: BLE001 - which one is the point of the test
        return exc
    await nc.close()
    return None


async def test_the_nodes_route_to_each_other_and_replicate_every_stream(cluster, pki):
    for node in cluster.nodes:
        assert node.peers() == {peer.name for peer in cluster.nodes} - {node.name}, cluster.log(node)[-2000:]
    nc = await connect_bus(cluster.url, unique("deploy"), [], user=SERVICE_USER, password=SERVICES_PASSWORD,
                           tls=service_tls(pki))  # fmt: skip
    try:
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        js = nc.jetstream()
        await ensure_streams(js, replicas=3)
        for config in STREAMS:
            info = await js.stream_info(config.name or "")
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2, info.cluster
    finally:
        await close_bus(nc)


async def test_a_client_that_does_not_trust_the_platform_ca_is_refused(cluster, pki):
    url = cluster.url
    login = {"user": SERVICE_USER, "password": SERVICES_PASSWORD}
    assert await refused(url, **login, tls=service_tls(pki)) is None
    # No CA given: nats-py upgrades to TLS (the server requires it) with the system's CAs, which never signed ours.
    assert isinstance(await refused(url, **login), ssl.SSLCertVerificationError)
    assert isinstance(await refused(url.replace("tls://", "nats://"), **login), ssl.SSLCertVerificationError)
    other = tls_context(str(pki / "other-ca.pem"))
    assert isinstance(await refused(url, **login, tls=other), ssl.SSLCertVerificationError)
    # Trusting the CA is not a login: the users of auth.conf still decide.
    wrong = await refused(url, user=SERVICE_USER, password="wrong", tls=service_tls(pki))
    assert wrong is not None and "authorization" in str(wrong).lower()


async def test_an_agent_user_keeps_its_role_over_tls(cluster, pki):
    denied: list[Exception] = []

    async def on_error(exc: Exception) -> None:  # a permission violation arrives asynchronously, as an error
        denied.append(exc)

    nc = await nats.connect(cluster.url.split(","), user="agent-gpu-01", password="CHANGE-ME-gpu-01-password",
                            tls=service_tls(pki), allow_reconnect=False, error_cb=on_error)  # fmt: skip
    try:
        await nc.publish("agent.heartbeat.gpu-01", b"{}")
        await nc.publish("agent.heartbeat.gpu-02", b"{}")  # another agent's subject
        await nc.flush()
        for _ in range(50):
            if denied:
                break
            await asyncio.sleep(0.05)
        assert len(denied) == 1 and "permissions violation" in str(denied[0]).lower()
        assert "agent.heartbeat.gpu-02" in str(denied[0])
    finally:
        await nc.close()


def test_a_node_whose_certificate_another_ca_signed_cannot_join(cluster, pki, tmp_path):
    """A route is authenticated by its certificate (cluster tls verify: true): a stranger's is refused."""
    node = cluster.nodes[0]
    config = tmp_path / "stranger.conf"
    config.write_text(
        f'server_name: stranger\nlisten: "127.0.0.1:{free_port()}"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f'cluster {{ name: llmct, listen: "127.0.0.1:{free_port()}", tls {{ cert_file: "{pki / "stranger.pem"}", '
        f'key_file: "{pki / "stranger-key.pem"}", ca_file: "{pki / "ca.pem"}", verify: true }}, '
        f'routes: ["nats-route://127.0.0.1:{node.cluster_port}"] }}\n'
    )
    log = tmp_path / "stranger.log"
    with log.open("wb") as out:
        stranger = subprocess.Popen([nats_server_binary(), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while "handshake error" not in (cluster.log(node) + log.read_text()).lower() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any("stranger" in peer.peers() for peer in cluster.nodes)
        text = cluster.log(node) + log.read_text()
        assert "handshake error" in text.lower(), text[-3000:]
    finally:
        stranger.terminate()
        stranger.wait(timeout=10)


async def test_sync_users_follows_the_cluster_over_tls(cluster, pki, postgres_server, pool):
    """`llmct nats sync-users --follow` beside a node: every node's URL, TLS with the CA, the services' user."""
    applied: list[dict] = []
    sync = UsersSync(cluster.url, postgres_server.url, lambda joined: bool(applied.append(joined)), every_s=60,
                     tls=service_tls(pki), user=SERVICE_USER, password=SERVICES_PASSWORD)  # fmt: skip
    stop = asyncio.Event()
    following = asyncio.create_task(sync.run(stop))
    nc = await connect_bus(cluster.url, unique("nudger"), [], user=SERVICE_USER, password=SERVICES_PASSWORD,
                           tls=service_tls(pki))  # fmt: skip
    try:
        answer = None
        for _ in range(50):  # until the sync has subscribed
            try:
                answer = await nc.request(Subjects.AGENT_USERS_CHANGED, b"", timeout=0.5)
                break
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.1)
        assert answer is not None and answer.data == b"synced"
        assert len(applied) >= 2  # at start, and on the nudge
    finally:
        stop.set()
        await following
        await close_bus(nc)


async def test_a_service_speaks_tls_from_its_settings_alone(cluster, pki, monkeypatch):
    """Services and agents connect through connect_bus with no TLS argument: NATS_TLS_CA in their environment."""
    login = {"user": SERVICE_USER, "password": SERVICES_PASSWORD}
    with pytest.raises((ssl.SSLCertVerificationError, TimeoutError)):  # it retries forever, as a service must
        await asyncio.wait_for(connect_bus(cluster.url, unique("no-ca"), [], **login), timeout=3)
    monkeypatch.setenv("NATS_TLS_CA", str(pki / "ca.pem"))
    nc = await asyncio.wait_for(connect_bus(cluster.url, unique("from-env"), [], **login), timeout=10)
    try:
        assert nc.is_connected and nc.connected_url is not None and nc.connected_url.scheme == "tls"
    finally:
        await close_bus(nc)


def test_a_joining_agent_logs_in_over_tls_with_the_hosts_ca(cluster, pki):
    """`llmct agent join` waits for NATS to let the new user in: with NATS_TLS_CA it can, without it never."""
    joined = {"nats_urls": cluster.url.split(","), "nats_user": "agent-gpu-01", "agent_id": "gpu-01",
              "nats_password": "CHANGE-ME-gpu-01-password"}  # fmt: skip
    wait_for_login(joined, timeout=10, tls=service_tls(pki))
    with pytest.raises(JoinFailed):
        wait_for_login(joined, timeout=1)


async def test_a_services_start_probe_speaks_tls_too(cluster, pki):
    """A service waiting for its dependencies (services/common/startup.py) probes NATS with the TLS it then
    connects with: with NATS_TLS_CA it is let in, without it it says why."""
    env = {"NATS_URL": cluster.url, "NATS_USER": SERVICE_USER, "NATS_PASSWORD": SERVICES_PASSWORD}
    assert await nats_problem(settings_from_env({**env, "NATS_TLS_CA": str(pki / "ca.pem")})) is None
    assert await nats_problem(settings_from_env(env)) is not None
