"""datasets_io: upload and download of a large dataset (2 GB by default) against a plain file copy.

Real servers (NATS, Postgres), the datasets service and the gateway as processes (launcher.start_services).
The file is JSON lines of alpaca rows (the tiny SFT examples, repeated). In the same run:

  copy      shutil.copyfile of the file to the same disk (the floor: what the disk and page cache allow)
  scan      the service's own row check (scan.scan) over the file in this process: the CPU part of an upload
  upload    POST /api/datasets/upload with curl -F (multipart, streamed), direct to the service and through
            the gateway; timed from the first byte to the 201, which includes the service's scan of every row
  download  GET /api/datasets/{id}/download with curl to /dev/null, direct and through the gateway

The peak resident memory (RSS) of the datasets service and of the gateway is sampled every 20 ms with
psutil during each transfer. Aim: flat, under 150 MB whatever the file size.

    .venv/bin/python -m bench.datasets_io [--size-gb 2] [--via direct gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg

from ._infra import Infra, machine, make_user, print_table, token_for, write_results

AIM_PEAK_MB = 150
MB = 1 << 20


class PeakRss:
    """Highest RSS of some processes while a block runs, sampled in a thread."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.02) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.every_s = every_s
        self.peak = dict.fromkeys(pids, 0)
        self.before = {name: p.memory_info().rss for name, p in self.procs.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                self.peak[name] = max(self.peak[name], proc.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, dict[str, float]]:
        return {
            name: {"before_mb": round(self.before[name] / MB, 1), "peak_mb": round(self.peak[name] / MB, 1)}
            for name in self.procs
        }


def make_file(path: Path, size: int) -> int:
    """Alpaca JSON lines, about `size` bytes; returns the rows written."""
    from llmct.tiny.data import sft_examples

    block = "".join(json.dumps(row) + "\n" for row in sft_examples(4096)).encode()
    rows_per_block = 4096
    written = rows = 0
    with open(path, "wb") as out:
        while written < size:
            out.write(block)
            written += len(block)
            rows += rows_per_block
    return rows


def settle() -> None:
    """Write back dirty pages first, so one phase does not pay for the previous one's writes."""
    os.sync()
    time.sleep(1)


def timed_copy(source: Path, target: Path) -> float:
    settle()
    start = time.perf_counter()
    shutil.copyfile(source, target)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def timed_scan(path: Path) -> tuple[float, int]:
    from services.datasets import formats, scan

    settle()
    start = time.perf_counter()
    result = scan.scan([path], "alpaca", formats.spec("alpaca").columns({}), {})
    return time.perf_counter() - start, result.rows


def curl_upload(url: str, token: str, path: Path, name: str) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Expect:",
            "-F",
            f"name={name}",
            "-F",
            "format=alpaca",
            "-F",
            f"file=@{path};filename=big.jsonl",
            f"{url}/api/datasets/upload",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"upload failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
    return elapsed, json.loads(out.stdout)


def curl_download(url: str, token: str, dataset_id: str) -> tuple[float, int]:
    start = time.perf_counter()
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "-H",
            f"Authorization: Bearer {token}",
            f"{url}/api/datasets/{dataset_id}/download",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"download failed ({out.returncode}): {out.stderr[-500:]}")
    return elapsed, int(float(out.stdout))


def delete(url: str, token: str, dataset_id: str) -> None:
    subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "-X",
            "DELETE",
            "-H",
            f"Authorization: Bearer {token}",
            f"{url}/api/datasets/{dataset_id}",
        ],
        check=True,
        capture_output=True,
    )


async def prepare_user(infra: Infra) -> str:
    conn = await asyncpg.connect(infra.settings.database_url)
    try:
        user_id = await make_user(conn, "bench-datasets")
    finally:
        await conn.close()
    return token_for(infra.settings, user_id, "bench-datasets")


def transfer(via: str, url: str, token: str, path: Path, size: int, pids: dict[str, int]) -> dict:
    """Upload then download once through `url`, with peak memory of the services."""
    settle()
    with PeakRss(pids) as up_mem:
        up_s, dataset = curl_upload(url, token, path, f"big-{via}")
    with PeakRss(pids) as down_mem:
        down_s, got = curl_download(url, token, dataset["id"])
    if got != size:
        raise RuntimeError(f"downloaded {got} bytes of {size}")
    delete(url, token, dataset["id"])
    return {
        "upload_s": round(up_s, 2),
        "upload_mb_s": round(size / MB / up_s, 1),
        "rows": dataset["rows"],
        "download_s": round(down_s, 2),
        "download_mb_s": round(size / MB / down_s, 1),
        "upload_memory": up_mem.report(),
        "download_memory": down_mem.report(),
    }


def run(args: argparse.Namespace, infra: Infra) -> dict:
    size = int(args.size_gb * (1 << 30))
    results: dict = {"machine": machine(), "params": vars(args).copy(), "aim": {"peak_rss_mb_max": AIM_PEAK_MB}}
    source = infra.base / "big.jsonl"
    print(f"writing a {args.size_gb} GB JSON lines file ...", flush=True)
    rows = make_file(source, size)
    size = source.stat().st_size
    results["file"] = {"bytes": size, "rows": rows}
    token = asyncio.run(prepare_user(infra))
    pids = {service.name: service.process.pid for service in infra.services}
    urls = {
        "direct": f"http://127.0.0.1:{infra.env['LLMCT_DATASETS_PORT']}",
        "gateway": f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}",
    }
    copy_s = timed_copy(source, infra.base / "copy.jsonl")
    results["copy"] = {"seconds": round(copy_s, 2), "mb_s": round(size / MB / copy_s, 1)}
    scan_s, scanned = timed_scan(source)
    results["scan"] = {"seconds": round(scan_s, 2), "mb_s": round(size / MB / scan_s, 1), "rows": scanned}
    results["runs"] = {}
    for via in args.via:
        print(f"[{via}] upload and download ...", flush=True)
        results["runs"][via] = transfer(via, urls[via], token, source, size, pids)
    source.unlink()
    return results


def report(results: dict) -> None:
    size_mb = results["file"]["bytes"] / MB
    copy = results["copy"]
    rows = [
        ["plain file copy", copy["seconds"], copy["mb_s"], "1.00", "-", "-"],
        [
            "row check alone (in-process)",
            results["scan"]["seconds"],
            results["scan"]["mb_s"],
            f"{results['scan']['seconds'] / copy['seconds']:.2f}",
            "-",
            "-",
        ],
    ]
    for via, run_ in results["runs"].items():
        for what in ("upload", "download"):
            memory = run_[f"{what}_memory"]
            rows.append(
                [
                    f"{what} ({via})",
                    run_[f"{what}_s"],
                    run_[f"{what}_mb_s"],
                    f"{run_[f'{what}_s'] / copy['seconds']:.2f}",
                    memory["datasets"]["peak_mb"],
                    memory.get("gateway", {}).get("peak_mb", "-"),
                ]
            )
    print_table(
        f"datasets I/O, {size_mb:,.0f} MB ({results['file']['rows']:,} rows)",
        ["what", "seconds", "MB/s", "x copy time", "datasets peak RSS MB", "gateway peak RSS MB"],
        rows,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of the dataset file")
    parser.add_argument("--via", nargs="+", choices=("direct", "gateway"), default=["direct", "gateway"])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, logs)")


def main(args: argparse.Namespace) -> dict:
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed (the client must not be the bottleneck)")
    with Infra("datasets_io", keep=args.keep) as infra:
        print("starting the datasets service and the gateway as processes ...", flush=True)
        infra.start_services(("datasets", "gateway"), LLMCT_DATASET_MAX_BYTES=str(int((args.size_gb + 1) * (1 << 30))))
        results = run(args, infra)
    report(results)
    write_results("datasets_io", results)
    return results


if __name__ == "__main__":
    cli = argparse.ArgumentParser(
        prog="python -m bench.datasets_io", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(cli)
    main(cli.parse_args())
    sys.exit(0)
