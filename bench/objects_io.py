"""objects_io: a model-sized file pushed into and pulled out of the JetStream Object Store (issue 15's `objects`
storage mode), against the raw nats-py object store and a plain file copy, in the same run.

A real nats-server with JetStream on this disk (llmct.embedded.NatsServer). The file is a random 16 MiB block
repeated (JetStream stores bytes as they come, compressing nothing). In the same run:

  copy          shutil.copyfile to the same disk (the floor: what the disk and page cache allow)
  raw put/get   nats-py's ObjectStore.put (its default 128 KiB chunks) and get(writeinto=file)
  ours put/get  services.common.objects.put_file (1 MiB chunks) and fetch (a pull consumer, 16 chunks a batch,
                into a temporary file, checked by sha256, then moved into place)

MB/s of each, ours as a ratio of copy and of raw, and the peak resident memory (RSS) of this process (the client:
what an agent or the gateway would hold) during each transfer. Aim: flat, under 150 MB whatever the size.

    .venv/bin/python -m bench objects_io [--size-mb 2048]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import nats

from llmct.embedded import NatsServer, free_port
from services.common import objects
from services.common.contracts import Buckets

from ._infra import machine, print_table, ratio, write_results
from .datasets_io import AIM_PEAK_MB, MB, PeakRss


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size-mb", type=int, default=2048, help="the file's size (default 2048: a 1B model)")


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        block = os.urandom(16 * MB)
        written = 0
        while written < size:
            n = min(len(block), size - written)
            out.write(block[:n] if n < len(block) else block)  # the same random block repeated: JetStream stores raw
            written += n


async def run(base: Path, size: int) -> dict:
    server = NatsServer(port=free_port(), monitor_port=free_port(), store_dir=base / "nats")
    server.start(log_file=base / "nats.log")
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await objects.ensure_buckets(js)
    raw_store = await js.create_object_store("bench-raw")
    source = base / "model.safetensors"
    make_file(source, size)
    rows: dict[str, dict] = {}

    async def timed(name: str, work) -> None:
        with PeakRss({"client": os.getpid()}) as rss:
            started = time.perf_counter()
            await work()
            seconds = time.perf_counter() - started
        rows[name] = {"seconds": round(seconds, 2), "mb_s": round(size / MB / seconds, 1), **rss.report()["client"]}
        print(f"  {name}: {rows[name]}", flush=True)

    async def copy() -> None:
        await asyncio.to_thread(shutil.copyfile, source, base / "copy.bin")

    async def raw_put() -> None:
        with source.open("rb") as f:
            await raw_store.put("model", f)

    async def raw_get() -> None:
        with (base / "raw.bin").open("wb") as f:
            await raw_store.get("model", writeinto=f)  # type: ignore[arg-type]

    async def ours_put() -> None:
        await objects.put_file(js, Buckets.MODELS, "bench/model.safetensors", source)

    async def ours_get() -> None:
        await objects.fetch(js, Buckets.MODELS, "bench/model.safetensors", base / "ours.bin")

    try:
        for name, work in (
            ("copy", copy),
            ("raw put", raw_put),
            ("raw get", raw_get),
            ("ours put", ours_put),
            ("ours get", ours_get),
        ):
            await timed(name, work)
        assert objects.file_sha256(base / "ours.bin") == objects.file_sha256(source), "a fetched file differs"
    finally:
        await nc.close()
        server.stop()
    return rows


def main(args: argparse.Namespace) -> None:
    size = args.size_mb * MB
    base = Path(tempfile.mkdtemp(prefix="llmct-bench-objects-"))
    try:
        rows = asyncio.run(run(base, size))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    copy = rows["copy"]["mb_s"]
    table = [
        (
            name,
            row["mb_s"],
            ratio(row["mb_s"], copy),
            ratio(row["mb_s"], rows[f"raw {name.split()[1]}"]["mb_s"]) if name.startswith("ours") else "-",
            row["peak_mb"],
        )
        for name, row in rows.items()
    ]
    print_table(
        f"{args.size_mb} MB through the object store (aim: client peak under {AIM_PEAK_MB} MB)",
        ("transfer", "MB/s", "x copy", "x raw", "client peak MB"),
        table,
    )
    write_results("objects_io", {"machine": machine(), "size_mb": args.size_mb, "rows": rows})
