"""What this host has: GPUs through NVML, CPU and memory through psutil (blocking: run in a thread).

LLMCT_SIMULATED_GPUS is a test and development setting only: the agent then reports that many fake GPUs
instead of asking NVML, so placement of GPU jobs can be exercised on machines without one. Never set it on a
real GPU host: the scheduler would place work on GPUs that do not exist.
"""

from __future__ import annotations

import psutil
import pynvml

from services.common.contracts import GpuStatus

MB = 1024 * 1024


def simulated_gpus(count: int, memory_mb: int) -> tuple[GpuStatus, ...]:
    """`count` fake GPUs (TEST/DEV ONLY), each `memory_mb` large."""
    return tuple(
        GpuStatus(
            index=i,
            name="Simulated GPU",
            memory_total_mb=memory_mb,
            memory_used_mb=0,
            utilization_pct=0.0,
            temperature_c=30.0,
            power_w=0.0,
        )
        for i in range(count)
    )


def read_gpus(simulated: int = 0, simulated_memory_mb: int = 24576) -> tuple[GpuStatus, ...]:
    """Every GPU NVML sees; none on a host without the driver (or `simulated` fake ones, in tests)."""
    if simulated:
        return simulated_gpus(simulated, simulated_memory_mb)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return ()
    try:
        return tuple(_read_gpu(i) for i in range(pynvml.nvmlDeviceGetCount()))
    except pynvml.NVMLError:
        return ()  # the driver went away between init and the reads: report no GPUs rather than no heartbeat
    finally:
        pynvml.nvmlShutdown()


def _read_gpu(index: int) -> GpuStatus:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    # c_ulonglong fields, ints; int() only because pynvml's __getattribute__ hides that from type checkers.
    total, used = int(memory.total), int(memory.used)
    name = pynvml.nvmlDeviceGetName(handle)
    utilization = _optional(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    power_mw = _optional(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
    return GpuStatus(
        index=index,
        name=name.decode() if isinstance(name, bytes) else name,
        memory_total_mb=total // MB,
        memory_used_mb=used // MB,
        utilization_pct=float(utilization or 0),
        temperature_c=_optional(lambda: float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))),
        power_w=None if power_mw is None else round(power_mw / 1000, 1),
    )


def _optional(read):
    """A reading some GPUs do not support (power, temperature on some boards, vGPUs): None then."""
    try:
        return read()
    except pynvml.NVMLError:
        return None


def read_host() -> dict:
    """CPU load and memory of the host."""
    memory = psutil.virtual_memory()
    return {
        "cpu_pct": psutil.cpu_percent(interval=None),
        "memory_total_mb": memory.total // MB,
        "memory_used_mb": (memory.total - memory.available) // MB,
    }
