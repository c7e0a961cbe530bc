"""The `process` runtime: the engine as a local process group, for hosts without Docker, laptops, CI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from ..hubs import HUB_SELECTORS
from .base import ExitInfo, JobSpec, RuntimeStartError

# What the engine inherits of the agent's environment: the system's basics and the accelerators' settings, nothing
# else. The agent's own environment holds the platform's secrets (NATS credentials, DATABASE_URL, LLMCT_SECRET_KEY,
# hub tokens) and its interpreter's settings (PYTHONPATH, VIRTUAL_ENV); the engine runs the user's config, so it
# gets none of them. What the stage needs (the hubs' settings, its cache, a server's port) comes in spec.env.
INHERITED_NAMES = frozenset(
    ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SHELL", "LD_LIBRARY_PATH")
)
INHERITED_PREFIXES = (
    *("LC_", "XDG_", "CUDA_", "NVIDIA_", "NCCL_", "CUDNN_", "HIP_", "ROCR_", "ROCM_", "ASCEND_"),
    *("OMP_", "MKL_", "PYTORCH_", "TORCH_", "TRITON_", "TOKENIZERS_"),
)


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the agent's environment an engine process may see (the allow-list above)."""
    return {
        name: value
        for name, value in environ.items()
        if (name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES)) and name not in HUB_SELECTORS
    }


class ProcessRun:
    def __init__(self, process: asyncio.subprocess.Process):
        if process.stdout is None or process.stderr is None:
            raise RuntimeError("the engine process was started without pipes for stdout and stderr")
        self._process = process
        self._queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=10_000)
        self._readers = [
            asyncio.create_task(self._read(process.stdout, "stdout")),
            asyncio.create_task(self._read(process.stderr, "stderr")),
        ]

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        try:
            while line := await stream.readline():
                await self._queue.put((name, line.decode(errors="replace").rstrip("\r\n")))
        finally:
            await self._queue.put(None)

    async def lines(self) -> AsyncIterator[tuple[str, str]]:
        ended = 0
        while ended < len(self._readers):
            item = await self._queue.get()
            if item is None:
                ended += 1
            else:
                yield item

    async def wait(self) -> ExitInfo:
        code = await self._process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        # A process killed by a signal reports -N; shells and containers say 128+N.
        return ExitInfo(exit_code=128 - code if code < 0 else code)

    async def stop(self, grace_s: float) -> None:
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)


class ProcessRuntime:
    """Runs `llamafactory-cli` from the engine's own environment (LLMCT_ENGINE_BIN), or a stage's command from the
    environment it names (`JobSpec.bin_dir`: vLLM's, LLMCT_VLLM_BIN)."""

    name = "process"

    def __init__(self, engine_bin: Path):
        self.engine_bin = engine_bin

    async def start(self, spec: JobSpec) -> ProcessRun:
        bin_dir = spec.bin_dir or self.engine_bin
        executable = bin_dir / spec.command[0]
        if not executable.exists():
            raise RuntimeStartError("engine_missing", f"{executable} not found: run engine/install.sh on this agent")
        env = {**inherited_environment(os.environ), **spec.env}
        env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '')}"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, spec.gpu_ids))
        try:
            process = await asyncio.create_subprocess_exec(
                str(executable),
                *spec.command[1:],
                cwd=str(spec.config_path.parent),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=1024 * 1024,
            )
        except OSError as exc:
            raise RuntimeStartError("engine_missing", f"cannot start {executable}: {exc}") from exc
        return ProcessRun(process)

    async def cleanup(self) -> None:
        return None
