"""dataset_upload: a 2 GB JSON-lines dataset upload, every row checked, against `cp` of the same file.

Real servers (NATS, Postgres), the datasets service and the gateway as processes. The file is alpaca JSON
lines of the tiny SFT examples (~96-byte rows: the worst case per byte for the row check). In the same run:

  cp        `cp` of the file on the same disk: the floor (what the disk and the page cache allow)
  check     the service's own row check (scan.scan) over the file in this process, one core: the CPU part
  raw       the same multipart body (curl -F) to a server that only writes the body to disk (bench/_upload_sink.py,
            uvicorn like the services): what HTTP on this stack costs before any parsing, hashing or checking
  direct    POST /api/datasets/upload straight to the datasets service, timed to its 201 (every row checked)
  gateway   the same through the gateway (its proxy streams the body on, chunked)

Each upload's ratio is cp's time over its own (1.0: as fast as cp; the issue's aim is >= 0.5). Peak RSS of the
datasets service (with any row-check worker processes it started, summed) and of the gateway is sampled every
20 ms. Dirty pages are written back (`sync`) before each phase.

`--modes shared objects` runs it all once per storage mode, one after the other in the same run (fresh servers
each): in `objects` mode the file also streams into the `llmct-datasets` bucket as it arrives and is stored when
the upload answers; the last table gives each upload's time in `objects` mode over its time in `shared` mode.

    .venv/bin/python -m bench.dataset_upload [--size-gb 2] [--repeat 1] [--profile datasets] [--modes shared objects]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg

from llmct.embedded import free_port, wait_until
from services.common import objects
from services.common.contracts import Buckets

from ._infra import Infra, machine, make_user, print_table, token_for, write_results

MB = 1 << 20
AIM_RATIO = 0.5
AIM_PEAK_MB = 150
_LOGGED = re.compile(r"(\d+) bytes received in ([\d.]+) s, (\d+) rows checked in ([\d.]+) s")


class PeakRss:
    """Highest RSS of some processes while a block runs, sampled in a thread: each process alone, its children
    (the datasets service's row-check workers) summed apart, and the two together at the same instant."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.02) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.every_s = every_s
        self.peak: dict[str, dict[str, int]] = {name: {"own": 0, "children": 0, "all": 0} for name in pids}
        self.before = {name: self._rss(p) for name, p in self.procs.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _rss(proc) -> tuple[int, int]:
        import psutil

        own = children = 0
        try:
            own = proc.memory_info().rss
            for child in proc.children(recursive=True):
                children += child.memory_info().rss
        except psutil.Error:
            pass
        return own, children

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                own, children = self._rss(proc)
                peak = self.peak[name]
                peak["own"], peak["children"] = max(peak["own"], own), max(peak["children"], children)
                peak["all"] = max(peak["all"], own + children)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "before_mb": round(self.before[name][0] / MB, 1),
                "peak_mb": round(self.peak[name]["own"] / MB, 1),
                "children_peak_mb": round(self.peak[name]["children"] / MB, 1),
                "with_children_peak_mb": round(self.peak[name]["all"] / MB, 1),
            }
            for name in self.procs
        }


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process and, apart, by its live children (the workers)."""
    import psutil

    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            own = proc.cpu_times()
            out[name] = own.user + own.system
            out[f"{name} workers"] = sum(sum(c.cpu_times()[:2]) for c in proc.children(recursive=True))
        except psutil.Error:
            pass
    return out


def make_file(path: Path, size: int) -> int:
    """Alpaca JSON lines, about `size` bytes; returns the rows written."""
    from llmct.tiny.data import sft_examples

    block = "".join(json.dumps(row) + "\n" for row in sft_examples(4096)).encode()
    written = rows = 0
    with open(path, "wb") as out:
        while written < size:
            out.write(block)
            written += len(block)
            rows += 4096
    return rows


def settle() -> None:
    """Write back dirty pages first, so one phase does not pay for the previous one's writes."""
    os.sync()
    time.sleep(1)


def timed_cp(source: Path, target: Path) -> float:
    settle()
    start = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def timed_check(path: Path) -> float:
    from services.datasets import formats, scan

    settle()
    start = time.perf_counter()
    scan.scan([path], "alpaca", formats.spec("alpaca").columns({}), {})
    return time.perf_counter() - start


def curl_upload(url: str, token: str | None, path: Path, name: str) -> tuple[float, dict]:
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    command = ["curl", "-sS", "--fail-with-body", *auth, "-H", "Expect:", "-F", f"name={name}", "-F", "format=alpaca"]
    command += ["-F", f"file=@{path};filename=big.jsonl", url]
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"upload failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    return elapsed, json.loads(out.stdout)


def delete(url: str, token: str, dataset_id: str) -> None:
    command = ["curl", "-sS", "--fail", "-X", "DELETE", "-H", f"Authorization: Bearer {token}"]
    subprocess.run([*command, f"{url}/api/datasets/{dataset_id}"], check=True, capture_output=True)


async def prepare_user(infra: Infra) -> str:
    conn = await asyncpg.connect(infra.settings.database_url)
    try:
        user_id = await make_user(conn, "bench-upload")
    finally:
        await conn.close()
    return token_for(infra.settings, user_id, "bench-upload")


async def ensure_buckets(infra: Infra) -> None:
    import nats

    nc = await nats.connect(infra.settings.nats_url)
    try:
        await objects.ensure_buckets(nc.jetstream())
    finally:
        await nc.close()


async def stored_bytes(infra: Infra) -> int:
    """What the datasets bucket's stream holds (0 when there is none)."""
    import nats

    nc = await nats.connect(infra.settings.nats_url)
    try:
        return (await nc.jetstream().stream_info(f"OBJ_{Buckets.DATASETS}")).state.bytes
    except Exception:  # noqa: BLE001 - shared mode: no bucket
        return 0
    finally:
        await nc.close()


class RawSink:
    """bench/_upload_sink.py as a child process."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bench._upload_sink", "--port", str(self.port), "--folder", str(folder)]
        self.process = subprocess.Popen(command, start_new_session=True)
        wait_until(self._up, timeout=30, what="the raw upload sink", interval=0.1)

    def _up(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def logged_split(log: Path, seen: int) -> dict | None:
    """The datasets service's own split of its latest upload (received, then checked), from its log."""
    found = _LOGGED.findall(log.read_text(errors="replace"))
    if len(found) <= seen:
        return None
    _, received_s, rows, checked_s = found[-1]
    return {"received_s": float(received_s), "checked_after_s": float(checked_s), "rows": int(rows)}


def upload_once(
    infra: Infra, via: str, url: str, token: str, source: Path, pids: dict[str, int], log: Path, n: int
) -> dict:
    settle()
    seen = len(_LOGGED.findall(log.read_text(errors="replace")))
    cpu_before = cpu_seconds(pids)
    with PeakRss(pids) as memory:
        seconds, dataset = curl_upload(f"{url}/api/datasets/upload", token, source, f"big-{via}-{n}")
    cpu_after = cpu_seconds(pids)
    stored = asyncio.run(stored_bytes(infra))
    delete(url, token, dataset["id"])
    cpu = {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in cpu_after}
    split = logged_split(log, seen)
    return {
        "seconds": seconds,
        "rows": dataset["rows"],
        "memory": memory.report(),
        "split": split,
        "cpu_s": cpu,
        "store_bytes_after": stored,
    }


def run(args: argparse.Namespace, infra: Infra) -> dict:
    results: dict = {
        "machine": machine(),
        "params": vars(args).copy(),
        "aim": {"ratio_to_cp_min": AIM_RATIO, "peak_rss_mb_max": AIM_PEAK_MB},
    }
    source = infra.base / "big.jsonl"
    print(f"writing a {args.size_gb} GB JSON lines file ...", flush=True)
    rows = make_file(source, int(args.size_gb * (1 << 30)))
    size = source.stat().st_size
    results["file"] = {"bytes": size, "rows": rows}
    token = asyncio.run(prepare_user(infra))
    if args.mode == "objects":
        asyncio.run(ensure_buckets(infra))  # the scheduler's job at start; it is not started here
    pids = {service.name: service.process.pid for service in infra.services if service.process}
    if infra.nats is not None and infra.nats.process is not None:  # it stores a second copy in `objects` mode
        pids["nats"] = infra.nats.process.pid
    urls = {
        "direct": f"http://127.0.0.1:{infra.env['LLMCT_DATASETS_PORT']}",
        "gateway": f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}",
    }
    log = infra.base / "service-logs" / "datasets.log"
    sink = RawSink(infra.base / "sink")
    phases: dict[str, list] = {"cp": [], "check": [], "raw": [], "direct": [], "gateway": []}
    try:
        for n in range(args.repeat):
            print(f"round {n + 1} of {args.repeat}: cp, check, raw, direct, gateway ...", flush=True)
            phases["cp"].append({"seconds": timed_cp(source, infra.base / "copy.jsonl")})
            if not args.skip_check:
                phases["check"].append({"seconds": timed_check(source)})
            settle()
            cpu_before = cpu_seconds({"sink": sink.process.pid})
            raw_s, answer = curl_upload(f"http://127.0.0.1:{sink.port}/", None, source, "raw")
            sink_cpu = round(cpu_seconds({"sink": sink.process.pid})["sink"] - cpu_before["sink"], 2)
            phases["raw"].append({"seconds": raw_s, "bytes": answer["bytes"], "cpu_s": {"sink": sink_cpu}})
            for via in args.via:
                phases[via].append(upload_once(infra, via, urls[via], token, source, pids, log, n))
    finally:
        sink.stop()
        source.unlink()
    results["phases"] = {name: runs for name, runs in phases.items() if runs}
    cp_s = statistics.median(r["seconds"] for r in phases["cp"])
    results["summary"] = {name: summarise(runs, size, cp_s) for name, runs in phases.items() if runs}
    return results


def summarise(runs: list[dict], size: int, cp_s: float) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    out = {"seconds": round(seconds, 2), "mb_s": round(size / MB / seconds, 1), "ratio_to_cp": round(cp_s / seconds, 3)}
    if "memory" in runs[0]:
        for name in runs[0]["memory"]:
            for key in ("peak_mb", "children_peak_mb", "with_children_peak_mb"):
                out[f"{name}_{key}"] = max(r["memory"][name][key] for r in runs)
    if "cpu_s" in runs[0]:
        out["cpu_s"] = {name: statistics.median(r["cpu_s"][name] for r in runs) for name in runs[0]["cpu_s"]}
    if runs[0].get("split"):
        out["received_s"] = statistics.median(r["split"]["received_s"] for r in runs)
        out["checked_after_s"] = statistics.median(r["split"]["checked_after_s"] for r in runs)
    return out


def report_modes(by_mode: dict[str, dict]) -> None:
    """Each upload's time in `objects` mode over its time in `shared` mode (same run, one after the other)."""
    if not {"shared", "objects"} <= set(by_mode):
        return
    shared, stored = by_mode["shared"]["summary"], by_mode["objects"]["summary"]
    rows = [
        [
            name,
            shared[name]["seconds"],
            stored[name]["seconds"],
            f"{stored[name]['seconds'] / shared[name]['seconds']:.2f}",
        ]
        for name in ("cp", "raw", "direct", "gateway")
        if name in shared and name in stored
    ]
    print_table("objects mode against shared mode (seconds)", ["what", "shared", "objects", "objects / shared"], rows)


def report(results: dict) -> None:
    labels = {
        "cp": "cp (the floor)",
        "check": "row check alone (in-process)",
        "raw": "raw HTTP upload (body to disk)",
        "direct": "upload, direct to the service",
        "gateway": "upload, through the gateway",
    }
    rows = []
    for name, s in results["summary"].items():
        rows.append(
            [
                labels[name],
                s["seconds"],
                s["mb_s"],
                f"{s['ratio_to_cp']:.2f}",
                s.get("received_s", "-"),
                s.get("checked_after_s", "-"),
                s.get("datasets_peak_mb", "-"),
                s.get("datasets_children_peak_mb", "-"),
                s.get("gateway_peak_mb", "-"),
            ]
        )
    file = results["file"]
    cpu_rows = [
        [labels[name], *(s["cpu_s"].get(k, "-") for k in ("sink", "datasets", "datasets workers", "gateway", "nats"))]
        for name, s in results["summary"].items()
        if "cpu_s" in s
    ]
    print_table(
        "CPU seconds of each server process during the upload (medians; a shared machine moves these far less)",
        ["what", "raw sink", "datasets", "its workers", "gateway", "nats-server"],
        cpu_rows,
    )
    print_table(
        f"dataset upload, {file['bytes'] / MB:,.0f} MB ({file['rows']:,} rows), "
        f"median of {results['params']['repeat']} round(s)",
        [
            "what",
            "seconds",
            "MB/s",
            "x cp speed",
            "received s",
            "checked after s",
            "datasets RSS MB",
            "its workers MB",
            "gateway MB",
        ],
        rows,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of the dataset file")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every phase (medians are reported)")
    parser.add_argument("--via", nargs="+", choices=("direct", "gateway"), default=["direct", "gateway"])
    parser.add_argument("--skip-check", action="store_true", help="skip the in-process row check phase")
    parser.add_argument("--workers", type=int, default=0, help="LLMCT_DATASET_CHECK_WORKERS (0: the default)")
    parser.add_argument("--profile", choices=("datasets", "gateway"), help="run that service under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, logs)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("shared", "objects"),
        default=["shared"],
        help="storage modes, one after the other",
    )


def main(args: argparse.Namespace) -> dict:
    if shutil.which("curl") is None or shutil.which("cp") is None:
        raise SystemExit("curl and cp are needed")
    by_mode: dict[str, dict] = {}
    for mode in args.modes:
        args.mode = mode
        with Infra("dataset_upload", keep=args.keep) as infra:
            print(f"starting the datasets service and the gateway as processes ({mode} storage) ...", flush=True)
            cap = str(int((args.size_gb + 1) * (1 << 30)))
            workers = {"LLMCT_DATASET_CHECK_WORKERS": str(args.workers)} if args.workers else {}
            extra = {"LLMCT_DATASET_MAX_BYTES": cap, "LLMCT_STORAGE_MODE": mode, **workers}
            infra.start_services(("datasets", "gateway"), profile=args.profile, **extra)
            by_mode[mode] = run(args, infra)
        print(f"--- {mode} storage ---")
        report(by_mode[mode])
    report_modes(by_mode)
    results = by_mode[args.modes[0]] if len(args.modes) == 1 else {"modes": by_mode}
    write_results("dataset_upload", results)
    return results


if __name__ == "__main__":
    cli = argparse.ArgumentParser(
        prog="python -m bench.dataset_upload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(cli)
    main(cli.parse_args())
    sys.exit(0)
