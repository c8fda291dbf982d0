"""Example job: greets, counts, and leaves an output file."""

import os
import sys
import time

greeting = os.environ.get("GREETING", "Hello")
target = os.environ.get("TARGET", "world")
print(f"{greeting}, {target}! I am job {os.environ['JOB_ID']}", flush=True)
for i in range(1, 4):
    print(f"working... step {i}/3", flush=True)
    time.sleep(0.3)
print("a line on stderr, for the log", file=sys.stderr, flush=True)
out_dir = os.environ["LOCAL_JOB_OUT_DIR"]
with open(os.path.join(out_dir, "greeting.txt"), "w") as fh:
    fh.write(f"{greeting}, {target}!\n")
print("done", flush=True)
