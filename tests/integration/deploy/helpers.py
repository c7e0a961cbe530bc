"""The deploy files' NATS cluster run for real: a CA and node certificates made with the openssl CLI, and the three
nodes of deploy/nats/ started from those very files (paths and ports moved onto this host)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from llmct.embedded import free_port, nats_server_binary, wait_until

ROOT = Path(__file__).resolve().parents[3]
DEPLOY_NATS = ROOT / "deploy" / "nats"
NODE_NAMES = ("nats-1", "nats-2", "nats-3")
SERVICES_PASSWORD = "CHANGE-ME-services-password"  # deploy/nats/auth.conf's placeholder: the file is used as it is


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def make_pki(folder: Path, ips: tuple[str, ...] = ()) -> Path:
    """A CA, and one node certificate it signed (server and client usage: a node dials its peers' routes) for the
    nodes' names, this host and `ips`; another CA's certificate too, one the platform does not trust."""
    folder.mkdir(parents=True)
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=llmct test {ca}",
                "-keyout", f"{ca}-key.pem", "-out", f"{ca}.pem", cwd=folder)  # fmt: skip
    names = ",".join(
        [f"DNS:{name}" for name in NODE_NAMES] + ["DNS:localhost", "IP:127.0.0.1"] + [f"IP:{ip}" for ip in ips]
    )
    (folder / "node.ext").write_text(
        f"subjectAltName={names}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    for signer, name in (("ca", "server"), ("other-ca", "stranger")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
                "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{signer}.pem", "-CAkey", f"{signer}-key.pem",
                "-CAcreateserial", "-days", "2", "-extfile", "node.ext", "-out", f"{name}.pem", cwd=folder)  # fmt: skip
    return folder


@dataclass
class DeployNode:
    name: str
    folder: Path
    port: int
    monitor: int
    cluster_port: int
    process: subprocess.Popen | None = None

    def healthz(self) -> bool:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/healthz", timeout=2) as answer:
                return json.load(answer).get("status") == "ok"
        return False

    def meta_leader(self) -> str | None:
        """The JetStream meta leader this node knows (streams can be made once there is one)."""
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/jsz", timeout=2) as answer:
                return (json.load(answer).get("meta_cluster") or {}).get("leader")
        return None

    def peers(self) -> set[str]:
        """The names of the nodes this one has routes with (/routez)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/routez", timeout=2) as answer:
            return {route.get("remote_name") for route in json.load(answer).get("routes") or []}


@dataclass
class DeployCluster:
    """deploy/nats/nats-{1,2,3}.conf, nats.conf and auth.conf, copied as they are but for the absolute paths (TLS
    files, JetStream store, pid file) and the ports, which the command line overrides: three nodes on one host."""

    folder: Path
    tls: Path
    nodes: list[DeployNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return ",".join(f"tls://127.0.0.1:{node.port}" for node in self.nodes)

    def place(self) -> None:
        for name in NODE_NAMES:
            node = DeployNode(name, self.folder / name, free_port(), free_port(), free_port())
            node.folder.mkdir(parents=True)
            for source in (DEPLOY_NATS / "nats.conf", DEPLOY_NATS / f"{name}.conf"):
                text = source.read_text()
                text = text.replace("/etc/nats/tls/", f"{self.tls}/")
                text = text.replace("/var/lib/nats/jetstream", str(node.folder / "jetstream"))
                text = text.replace("/var/run/nats/nats.pid", str(node.folder / "nats.pid"))
                (node.folder / source.name).write_text(text)
            shutil.copy(DEPLOY_NATS / "auth.conf", node.folder / "auth.conf")
            self.nodes.append(node)

    def command(self, node: DeployNode) -> list[str]:
        routes = ",".join(f"nats-route://127.0.0.1:{peer.cluster_port}" for peer in self.nodes if peer is not node)
        return [
            nats_server_binary(), "-c", str(node.folder / f"{node.name}.conf"), "-a", "127.0.0.1",
            "-p", str(node.port), "-m", str(node.monitor),
            "--cluster", f"nats://127.0.0.1:{node.cluster_port}", "--routes", routes,
        ]  # fmt: skip

    def start(self) -> DeployCluster:
        self.place()
        for node in self.nodes:
            with (node.folder / "nats.log").open("wb") as log:
                node.process = subprocess.Popen(self.command(node), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, timeout=60, what="the deploy NATS cluster")
        except Exception:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        return all(node.healthz() and node.meta_leader() for node in self.nodes)

    def log(self, node: DeployNode) -> str:
        return (node.folder / "nats.log").read_text(errors="replace")

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
