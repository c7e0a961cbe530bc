"""Separate hosts on one machine: network namespaces joined to this host by one bridge of the test's own.

`HostNetwork` makes a bridge with a small private subnet (its address is the only one of this host the namespaces
can reach: they get no default route), and `add_host` makes a namespace with a veth pair into that bridge, which
refuses every connection from outside. A server
the namespaces must reach listens on `HostNetwork.address`; everything this host serves on 127.0.0.1 (Postgres, the
services' own ports) stays out of their reach. Names carry a random suffix and everything is deleted in `close`,
so runs side by side never meet. ../shared/ENVIRONMENT.md says what was measured.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

COMMAND_TIMEOUT_S = 15


def unavailable() -> str | None:
    """Why this machine cannot make network namespaces (a reason to skip the tier), or None."""
    if not shutil.which("ip"):
        return "the `ip` command is not installed (apt-get install iproute2)"
    if not shutil.which("iptables"):
        return "the `iptables` command is not installed (apt-get install iptables)"
    if os.geteuid() != 0:
        return "network namespaces need root (run the hosts tier as root)"
    return None


def ip(*args: str, netns: str | None = None) -> str:
    """Run `ip` (inside `netns` when given); its output, or RuntimeError with what it printed."""
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that no interface of this host uses yet."""
    used = ip("-4", "-o", "addr", "show")
    for _ in range(64):
        third = random.randrange(1, 255)
        if f" 10.213.{third}." not in used:
            return ipaddress.IPv4Network(f"10.213.{third}.0/24")
    raise RuntimeError("no free /24 in 10.213.0.0/16")


@dataclass
class IsolatedHost:
    """One namespace: its address on the bridge, its own folder, and the processes started in it."""

    name: str
    address: str
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*command), capture_output=True, text=True, timeout=timeout)

    def start(self, command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
        """A process inside the namespace (its own session, stopped in `close`)."""
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                self.argv(*command), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        """SIGKILL every process in the namespace (a host losing power: no goodbye, its engines too)."""
        for _ in range(3):
            listed = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout.split()
            if not listed:
                return
            for pid in listed:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.2)

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


class HostNetwork:
    """The bridge and the namespaces behind it; `close` deletes all of it (namespaces, links, folders)."""

    def __init__(self, base: Path):
        self.base = base
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = _free_subnet()
        self.bridge = f"llbr{self.tag}"  # interface names hold at most 15 characters
        self.address = str(self.subnet.network_address + 1)
        self.hosts: list[IsolatedHost] = []
        self._links: list[str] = []
        ip("link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        ip("addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add_host(self, label: str) -> IsolatedHost:
        """A namespace on the bridge that dials out and answers no new connection from outside (iptables inside
        it: nothing of this host's platform may rely on reaching an agent)."""
        index = len(self.hosts) + 1
        name = f"llmct-{self.tag}-{label}"
        outer, inner = f"llv{self.tag}{index}o", f"llv{self.tag}{index}i"
        address = str(self.subnet.network_address + 1 + index)
        ip("netns", "add", name)
        host = IsolatedHost(name=name, address=address, root=self.base / label)
        self.hosts.append(host)
        ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        self._links.append(outer)
        ip("link", "set", inner, "netns", name)
        ip("link", "set", outer, "master", self.bridge)
        ip("link", "set", outer, "up")
        ip("addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", inner, netns=name)
        ip("link", "set", inner, "up", netns=name)
        ip("link", "set", "lo", "up", netns=name)
        no_new = ("-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")
        refused = host.run("iptables", "-A", "INPUT", "!", "-i", "lo", *no_new)
        if refused.returncode != 0:
            raise RuntimeError(f"iptables in {name}: {refused.stderr.strip()}")
        host.root.mkdir(parents=True, exist_ok=True)
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.stop_processes()
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                ip("netns", "del", host.name)
        for link in reversed(self._links):  # a veth whose peer went with its namespace is gone already
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                ip("link", "del", link)
        shutil.rmtree(self.base, ignore_errors=True)
