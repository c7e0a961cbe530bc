"""A real, private Docker engine for tests, and an engine image made without any registry.

`DockerEngine` starts Debian's `dockerd` by hand with its own data root, exec root, pid file, socket
and containerd namespace, with no bridge and no iptables rules, so it touches neither the host's
network nor a system Docker running beside it. `build_test_image` imports (`docker import`) a rootfs
of only the `/bin`, `/lib`, `/lib64` -> `usr/...` links, a real `/sbin` (init=True needs it), `/etc`
and `/tmp`; the engine then runs with the host's `/usr`, the engine venv and the Python prefix that
venv points to bind-mounted read-only (`engine_mounts`). See docs/docker.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker
import docker.errors

TEST_IMAGE = "llmct-test-engine:1"
START_TIMEOUT_S = 60.0


class DockerEngine:
    """`dockerd` under a private folder; `client` talks to it over its own unix socket."""

    def __init__(self, base: Path | None = None):
        # Unix socket paths are limited to ~108 bytes and containerd puts its socket under the exec
        # root, so the folder is a short one in /tmp rather than pytest's deep tmp_path.
        self.base = base or Path(tempfile.mkdtemp(prefix="llmct-dockerd-", dir="/tmp"))
        self.socket = self.base / "docker.sock"
        self.pidfile = self.base / "dockerd.pid"
        self.log_path = self.base / "dockerd.log"
        self.base_url = f"unix://{self.socket}"
        self.namespace_id = uuid.uuid4().hex[:12]
        self.process: subprocess.Popen | None = None
        self.client: docker.DockerClient | None = None

    @staticmethod
    def unavailable() -> str | None:
        """Why this machine cannot run the engine (a reason to skip), or None."""
        if not shutil.which("dockerd"):
            return "dockerd is not installed (apt-get install docker.io)"
        if os.geteuid() != 0:
            return "dockerd needs root to start (run the docker tests as root)"
        return None

    def command(self) -> list[str]:
        # containerd namespaces allow only [A-Za-z0-9] runs joined by single [._-] (mkdtemp's
        # suffix may hold "_"), hence a hex id rather than the folder's name.
        namespace = f"llmct-test-{self.namespace_id}"
        return [
            shutil.which("dockerd") or "dockerd",
            "--data-root",
            str(self.base / "data"),
            "--exec-root",
            str(self.base / "exec"),
            "--pidfile",
            str(self.pidfile),
            "-H",
            self.base_url,
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--containerd-namespace",
            namespace,
            "--containerd-plugins-namespace",
            f"{namespace}-plugins",
        ]

    def start(self) -> docker.DockerClient:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.socket.exists():
                client = docker.DockerClient(base_url=self.base_url, timeout=120)
                try:
                    client.ping()
                    self.client = client
                    return client
                except docker.errors.DockerException:
                    client.close()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dockerd did not answer in {START_TIMEOUT_S:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        """Remove every container, stop dockerd (and the containerd it started), delete its folder."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                for container in self.client.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
            self.client.close()
            self.client = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.base, ignore_errors=True)


def _tar_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _tar_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def _tar_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def rootfs_tar() -> bytes:
    """The image's whole filesystem: links into a /usr that is bind-mounted from the host at run time."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("usr", "sbin", "etc", "root", "proc", "sys", "dev", "run", "var"):
            _tar_dir(tar, name)  # a real /sbin: init=True mounts docker-init into it
        _tar_dir(tar, "tmp", 0o1777)
        for name in ("bin", "lib", "lib64", "lib32", "libx32"):
            if os.path.islink(f"/{name}") and os.readlink(f"/{name}").lstrip("/").startswith("usr/"):
                _tar_link(tar, name, os.readlink(f"/{name}").lstrip("/"))
        _tar_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _tar_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        if os.path.exists("/etc/ld.so.cache"):  # where the dynamic linker finds the host's libraries
            _tar_file(tar, "etc/ld.so.cache", Path("/etc/ld.so.cache").read_bytes())
    return buffer.getvalue()


def build_test_image(client: docker.DockerClient, engine_venv: Path, tag: str = TEST_IMAGE) -> str:
    """`docker import` of rootfs_tar(), with the engine venv's bin/ first on PATH; returns the tag."""
    repository, _, version = tag.partition(":")
    path = f"{engine_venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    client.api.import_image(
        src=rootfs_tar(),
        repository=repository,
        tag=version or "latest",
        changes=[f"ENV PATH={path}", "ENV LANG=C.UTF-8"],
    )
    client.images.get(tag)  # raises if the import did not produce it
    return tag


def python_prefix(engine_venv: Path) -> Path:
    """The installation the venv's interpreter belongs to (sys.base_prefix)."""
    done = subprocess.run(
        [str(engine_venv / "bin" / "python"), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return Path(done.stdout.strip())


def engine_mounts(engine_venv: Path) -> dict[str, str]:
    """Read-only mounts that make the test image a real engine: /usr, the venv, the Python prefix."""
    mounts = {"/usr": "/usr", str(engine_venv): str(engine_venv)}
    prefix = str(python_prefix(engine_venv))
    if not any(prefix == m or prefix.startswith(m.rstrip("/") + "/") for m in mounts):
        mounts[prefix] = prefix
    return mounts


if __name__ == "__main__":  # a manual check: start an engine, build the image, run python in it
    engine = DockerEngine()
    reason = engine.unavailable()
    if reason:
        sys.exit(reason)
    client = engine.start()
    try:
        venv = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".venv-engine")
        image = build_test_image(client, venv)
        mounts = [docker.types.Mount(t, s, type="bind", read_only=True) for s, t in engine_mounts(venv).items()]
        print(
            client.containers.run(
                image, ["python", "-c", "import sys; print(sys.version)"], mounts=mounts, init=True, remove=True
            ).decode()
        )
    finally:
        engine.stop()
