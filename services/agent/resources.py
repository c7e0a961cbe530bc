"""What this host has: GPUs through NVML, CPU and memory through psutil (blocking: run in a thread)."""

from __future__ import annotations

import psutil
import pynvml

from services.common.contracts import GpuStatus

MB = 1024 * 1024


def read_gpus() -> tuple[GpuStatus, ...]:
    """Every GPU NVML sees; none on a host without the driver."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return ()
    try:
        return tuple(_read_gpu(i) for i in range(pynvml.nvmlDeviceGetCount()))
    finally:
        pynvml.nvmlShutdown()


def _read_gpu(index: int) -> GpuStatus:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    name = pynvml.nvmlDeviceGetName(handle)
    return GpuStatus(
        index=index,
        name=name.decode() if isinstance(name, bytes) else name,
        memory_total_mb=memory.total // MB,
        memory_used_mb=memory.used // MB,
        utilization_pct=float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        temperature_c=float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
    )


def read_host() -> dict:
    """CPU load and memory of the host."""
    memory = psutil.virtual_memory()
    return {
        "cpu_pct": psutil.cpu_percent(interval=None),
        "memory_total_mb": memory.total // MB,
        "memory_used_mb": (memory.total - memory.available) // MB,
    }
