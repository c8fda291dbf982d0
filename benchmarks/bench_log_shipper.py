"""Cost of shipping running logs to a bucket as pieces (local slots on S3).

Every ``JOBYARD_S3_LOG_PIECE_SECONDS`` a ``jobyard up`` on S3 uploads what each running
job's spool file gained (:mod:`jobyard.blobs.ship`). This measures one such round against
a local S3 server (moto): ``--logs`` spool files, each grown by ``--bytes`` since the
last round; prints the wall time and this process's CPU per round and per log, and the
round with no new bytes (what idle running jobs cost).

    .venv/bin/python benchmarks/bench_log_shipper.py [--logs 100] [--bytes 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import BENCH_HOMES, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.s3 import AWS_ENV, start_s3

from jobyard.blobs.keys import log_key
from jobyard.blobs.s3 import S3BlobStore
from jobyard.blobs.ship import LogShipper


async def _rounds(blobs: S3BlobStore, logs: int, size: int, rounds: int) -> None:
    shipper = LogShipper(blobs)
    paths = [blobs.spool_path(log_key(job_id)) for job_id in range(1, logs + 1)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    print("| round | logs grown | wall ms | CPU ms | CPU ms/log |")
    print("|---|---|---|---|---|")
    for index in range(rounds + 1):
        grown = logs if index < rounds else 0
        for path in paths[:grown]:
            with open(path, "ab") as f:
                f.write(b"x" * size)
        cpu, wall = time.process_time(), time.perf_counter()
        await shipper.ship()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per = f"{cpu * 1000 / grown:.2f}" if grown else "-"
        name = str(index + 1) if grown else "idle"
        print(f"| {name} | {grown} | {wall * 1000:.0f} | {cpu * 1000:.0f} | {per} |")


def main(logs: int, size: int, rounds: int) -> None:
    print(machine())
    print(f"\n{logs} running logs, each {size} bytes more per round, moto S3 on loopback\n")
    os.environ.update(AWS_ENV)
    server = start_s3()
    try:
        BENCH_HOMES.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="ship-", dir=BENCH_HOMES) as home:
            blobs = S3BlobStore(
                server.new_bucket(), "bench", spool=Path(home), endpoint_url=server.endpoint
            )
            asyncio.run(_rounds(blobs, logs, size, rounds))
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, default=100)
    parser.add_argument("--bytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.logs, args.bytes, args.rounds)
