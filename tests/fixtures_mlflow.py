"""A real MLflow tracking server for the tests that report to one: `mlflow server` from .venv-mlflow
(tests/tools/mlflow/install.sh, which `make test` runs), on a free loopback port, its runs in sqlite in a tmp folder."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from llmct.embedded import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"


@dataclass
class MlflowServer:
    """A started `mlflow server`; `url` is its tracking URI."""

    folder: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self) -> MlflowServer:
        self.port = free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "server.log").open("ab")
        command = [
            str(MLFLOW),
            "server",
            *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
            *("--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}"),
            *("--artifacts-destination", str(self.folder / "artifacts")),
        ]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        try:
            wait_until(lambda: self.answers() or self.process.poll() is not None, timeout=120, what="mlflow server")
        except Exception:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: see {self.folder / 'server.log'}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str, **params) -> dict:
        """An answer of MLflow's REST API (`runs/get`, `metrics/get-history`, …)."""
        answer = httpx.get(f"{self.url}/api/2.0/mlflow/{path}", params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()
