"""Run every benchmark and print their figures (``make bench``).

    .venv/bin/python benchmarks/run_all.py            # full run (~8 min: real minutes)
    .venv/bin/python benchmarks/run_all.py --quick    # scaled down (~2.5 min)
    .venv/bin/python benchmarks/run_all.py --only history --engines sqlite

A missed target is printed as ``MISSED``; the exit status is non-zero only when a
benchmark could not run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (script, full-run arguments, quick-run arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "latency": ("bench_latency.py", [], ["--samples", "50"]),
    "throughput": ("bench_throughput.py", [], ["--jobs", "300"]),
    "history": ("bench_history.py", [], ["--rows", "100000", "--queries", "100"]),
    "schedules": ("bench_schedules.py", [], ["--schedules", "2000", "--minutes", "1"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, faster runs")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--engines", help="for the history benchmark: sqlite,postgresql")
    args = parser.parse_args()
    failed = []
    for name in args.only or list(BENCHMARKS):
        script, full, quick = BENCHMARKS[name]
        extra = list(quick if args.quick else full)
        if name == "history" and args.engines:
            extra += ["--engines", args.engines]
        print(f"\n=== {name}: {script} {' '.join(extra)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(HERE / script), *extra], cwd=HERE)
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
