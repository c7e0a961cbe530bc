"""downloads: a large file of a job's outputs (1 GB by default) downloaded through the gateway, whole and resumed.

Real servers (NATS, Postgres), the scheduler and the gateway as processes (launcher.start_services); the job is a
finished one written straight into the database, its output a file of random bytes. In the same run:

  copy      shutil.copyfile of the file to the same disk (the floor)
  direct    GET /api/jobs/{id}/artifacts/{path} from the scheduler with curl to /dev/null
  gateway   the same through the gateway
  resumed   through the gateway: curl gets the first half only (-r 0-<half>), then `curl -C -` finishes the same file
            (Range: bytes=<half>-); the joined file's sha256 is checked against the source
  zip       GET /api/jobs/{id}/artifacts through the gateway (the folder zipped, resumable: archive.py), whole, then
            resumed the same way (checked against a whole download)

The peak resident memory (RSS) of the scheduler and the gateway is sampled every 20 ms during each transfer.
Aim: flat, under 150 MB whatever the file size.

    .venv/bin/python -m bench.downloads [--size-gb 1]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from services.common.security import new_id
from services.common.store import create_pool
from services.scheduler.jobs import store

from ._infra import Infra, machine, make_user, print_table, token_for, write_results
from .datasets_io import AIM_PEAK_MB, MB, PeakRss, settle, timed_copy

FILE = "checkpoint-100/model.safetensors"


def make_file(path: Path, size: int) -> str:
    """`size` random-looking bytes (one random MiB block repeated, each copy made distinct); their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block, digest = os.urandom(MB), hashlib.sha256()
    with path.open("wb") as f:
        for i in range(0, size, MB):
            piece = (i.to_bytes(8, "little") + block[8:])[: min(MB, size - i)]
            digest.update(piece)
            f.write(piece)
    return digest.hexdigest()


async def finished_job(infra: Infra, output_dir: Path) -> tuple[str, str]:
    """A user's token and a succeeded job of theirs whose outputs are in `output_dir`."""
    pool = await create_pool(infra.settings.database_url)
    job_id = new_id("job")
    try:
        async with pool.acquire() as conn, conn.transaction():
            user_id = await make_user(conn, "bench-downloads")
            await store.insert_job(
                conn,
                job_id=job_id,
                owner_id=user_id,
                kind="train",
                priority=0,
                gpu_count=0,
                request={"base_model": "none"},
                config={},
                config_yaml="stage: sft\n",
                stages=[{"name": "train", "command": ["true"], "config_yaml": "stage: sft\n"}],
                output_dir=str(output_dir),
                estimate={"per_gpu_mb": 0},
            )
            await conn.execute("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1", job_id)
    finally:
        await pool.close()
    return token_for(infra.settings, user_id, "bench-downloads"), job_id


def curl(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--fail", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"curl failed ({out.returncode}): {out.stderr[-500:]}")
    return time.perf_counter() - start, out.stdout


def timed(url: str, token: str, size: int, pids: dict[str, int], *args: str) -> dict:
    settle()
    with PeakRss(pids) as memory:
        seconds, got = curl("-H", f"Authorization: Bearer {token}", "-w", "%{size_download}", *args, url)
    return {"seconds": round(seconds, 2), "mb_s": round(size / MB / seconds, 1), "bytes": int(float(got))} | {
        "memory": memory.report()
    }


def resumed(url: str, token: str, size: int, pids: dict[str, int], target: Path, sha256: str) -> dict:
    """The first half, then the rest with `curl -C -`; the joined file's sha256 must be `sha256`."""
    half = size // 2
    auth = ("-H", f"Authorization: Bearer {token}")
    curl(*auth, "-r", f"0-{half - 1}", "-o", str(target), url)
    if target.stat().st_size != half:
        raise RuntimeError(f"the first part has {target.stat().st_size} bytes, not {half}")
    run = timed(url, token, size - half, pids, "-C", "-", "-o", str(target))
    joined = hashlib.sha256()
    with target.open("rb") as f:
        while block := f.read(MB):
            joined.update(block)
    run["sha256_equal"] = joined.hexdigest() == sha256
    target.unlink()
    return run


def run(args: argparse.Namespace, infra: Infra) -> dict:
    size = int(args.size_gb * (1 << 30))
    results: dict = {"machine": machine(), "params": vars(args).copy(), "aim": {"peak_rss_mb_max": AIM_PEAK_MB}}
    out = infra.base / "outputs"
    print(f"writing a {args.size_gb} GB output file ...", flush=True)
    sha256 = make_file(out / FILE, size)
    results["file"] = {"bytes": size}
    token, job_id = asyncio.run(finished_job(infra, out))
    pids = {service.name: service.process.pid for service in infra.services}
    path = f"/api/jobs/{job_id}/artifacts/{FILE}"
    direct = f"http://127.0.0.1:{infra.env['LLMCT_SCHEDULER_PORT']}{path}"
    gateway = f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}{path}"
    copy_s = timed_copy(out / FILE, infra.base / "copy.bin")
    results["copy"] = {"seconds": round(copy_s, 2), "mb_s": round(size / MB / copy_s, 1)}
    print("downloading direct, through the gateway, then resumed ...", flush=True)
    results["direct"] = timed(direct, token, size, pids, "-o", "/dev/null")
    results["gateway"] = timed(gateway, token, size, pids, "-o", "/dev/null")
    results["resumed"] = resumed(gateway, token, size, pids, infra.base / "resumed.bin", sha256)
    zip_url = f"http://127.0.0.1:{infra.env['LLMCT_GATEWAY_PORT']}/api/jobs/{job_id}/artifacts"
    zip_size, zip_sha256 = whole_zip(zip_url, token, infra.base / "whole.zip")
    results["zip"] = timed(zip_url, token, zip_size, pids, "-o", "/dev/null")
    results["zip_resumed"] = resumed(zip_url, token, zip_size, pids, infra.base / "resumed.zip", zip_sha256)
    if not (results["resumed"]["sha256_equal"] and results["zip_resumed"]["sha256_equal"]):
        raise RuntimeError("a resumed download is not the file")
    return results


def whole_zip(url: str, token: str, target: Path) -> tuple[int, str]:
    """The zip's size and sha256, downloaded once whole (the reference the resumed one is checked against)."""
    curl("-H", f"Authorization: Bearer {token}", "-o", str(target), url)
    digest = hashlib.sha256()
    with target.open("rb") as f:
        while block := f.read(MB):
            digest.update(block)
    size = target.stat().st_size
    target.unlink()
    return size, digest.hexdigest()


def report(results: dict) -> None:
    copy = results["copy"]
    rows = [["plain file copy", copy["seconds"], copy["mb_s"], "1.00", "-", "-"]]
    labels = {
        "direct": "whole file (direct)",
        "gateway": "whole file (gateway)",
        "resumed": "second half, curl -C - (gateway)",
        "zip": "artifacts zip, whole (gateway)",
        "zip_resumed": "artifacts zip, second half, curl -C - (gateway)",
    }
    for what, label in labels.items():
        r = results[what]
        rows.append(
            [
                label,
                r["seconds"],
                r["mb_s"],
                f"{r['seconds'] / copy['seconds']:.2f}",
                r["memory"]["scheduler"]["peak_mb"],
                r["memory"]["gateway"]["peak_mb"],
            ]
        )
    print_table(
        f"downloads, {results['file']['bytes'] / MB:,.0f} MB (sha256 of the resumed file and zip equal: "
        f"{results['resumed']['sha256_equal']}, {results['zip_resumed']['sha256_equal']})",
        ["what", "seconds", "MB/s", "x copy time", "scheduler peak RSS MB", "gateway peak RSS MB"],
        rows,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-gb", type=float, default=1.0, help="size of the output file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (servers' data, logs)")


def main(args: argparse.Namespace) -> dict:
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed (the client must not be the bottleneck)")
    with Infra("downloads", keep=args.keep) as infra:
        print("starting the scheduler and the gateway as processes ...", flush=True)
        infra.start_services(("scheduler", "gateway"))
        results = run(args, infra)
    report(results)
    write_results("downloads", results)
    return results


if __name__ == "__main__":
    cli = argparse.ArgumentParser(
        prog="python -m bench.downloads", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(cli)
    main(cli.parse_args())
    sys.exit(0)
