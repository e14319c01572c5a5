"""`cargo xtask bench` workload: THREADS threads (default 4) take one
Python threading.Lock in a loop (a sem_t in CPython 3.11; the GIL's own
futex waits come with it). One op is one acquisition.

Usage: pylock.py SECONDS WARMUP [THREADS]

Prints {"bench_start":"pylock"} when the timed phase begins and one JSON
result line at the end, like the C workloads (bench.h).
"""

import json
import sys
import threading
import time

LINGER_S = 0.15


def main():
    if len(sys.argv) < 3:
        print("usage: pylock.py SECONDS WARMUP [THREADS]", file=sys.stderr)
        sys.exit(2)
    t_start = time.monotonic()
    seconds, warmup = float(sys.argv[1]), float(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    lock = threading.Lock()
    counts = [0] * threads
    stop = threading.Event()
    shared = [0]

    def worker(i):
        n = 0
        while not stop.is_set():
            for _ in range(100):
                with lock:
                    shared[0] += 1
                n += 1
            counts[i] = n

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(warmup)
    print(json.dumps({"bench_start": "pylock"}), flush=True)
    t0 = time.monotonic()
    before = sum(counts)
    time.sleep(seconds)
    ops = sum(counts) - before
    elapsed = time.monotonic() - t0
    stop.set()
    for w in workers:
        w.join()
    result = {
        "bench": "pylock",
        "ops": ops,
        "seconds": round(elapsed, 6),
        "ops_per_sec": round(ops / elapsed, 3),
        "total_seconds": round(time.monotonic() - t_start, 6),
        "threads": threads,
    }
    print(json.dumps(result), flush=True)
    time.sleep(LINGER_S)


if __name__ == "__main__":
    main()
