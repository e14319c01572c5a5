"""Workload: contention on one Python threading.Lock.

Same shape as c_mutex.c: a "holder" thread takes the lock, announces the
round, sleeps HOLD_MS with the lock held, releases it and sleeps 20 ms; three
"waiter-N" threads acquire and release the lock once per round, right after
the holder took it, so each blocks for about HOLD_MS.

In CPython 3.11 (and 3.12) a threading.Lock is a POSIX sem_t: acquire blocks
in sem_wait (a futex wait on the semaphore's value, with the GIL released) and
release is sem_post, which wakes one waiter. Python cannot tell us the
sem_t's address, so the tests identify the lock's waits by who woke them.

The waiters poll the round counter with time.sleep (clock_nanosleep, not a
futex), so the lock is the only futex with long waits apart from the GIL's
short timed waits and thread joins in the main thread.

Usage: py_lock.py [ROUNDS [HOLD_MS]]   (defaults 10 and 30)

Prints one JSON line of ground truth to stdout at the end.
"""

import json
import os
import sys
import threading
import time

WAITERS = 3
GAP_MS = 20
# Before the first round: threads are named, and spanlet, if it attaches a
# little after the process starts, does not miss round 1.
WARMUP_MS = 100


def set_os_thread_name(name):
    """Name the OS thread so spanlet's comm shows it (Python's thread names
    are Python-only before 3.14)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    hold_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    if rounds < 1 or hold_ms < 1:
        print("usage: py_lock.py [ROUNDS [HOLD_MS]]", file=sys.stderr)
        sys.exit(2)

    lock = threading.Lock()
    state = {"round": 0, "acquisitions": 0}
    ready = threading.Barrier(WAITERS + 1)
    holder_info = {}
    waiter_tids = [0] * WAITERS

    def holder():
        set_os_thread_name("holder")
        holder_info["tid"] = threading.get_native_id()
        ready.wait()
        time.sleep(WARMUP_MS / 1000)
        windows = []
        for r in range(1, rounds + 1):
            lock.acquire()
            locked = time.time_ns()
            state["round"] = r
            time.sleep(hold_ms / 1000)
            windows.append([locked, time.time_ns()])
            lock.release()
            time.sleep(GAP_MS / 1000)
        holder_info["windows"] = windows

    def waiter(i):
        set_os_thread_name(f"waiter-{i}")
        waiter_tids[i] = threading.get_native_id()
        ready.wait()
        for r in range(1, rounds + 1):
            # 0.5 ms polls: short next to the hold, light on the GIL.
            while state["round"] < r:
                time.sleep(0.0005)
            with lock:
                state["acquisitions"] += 1

    threads = [threading.Thread(target=holder, name="holder")]
    threads += [
        threading.Thread(target=waiter, args=(i,), name=f"waiter-{i}")
        for i in range(WAITERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    truth = {
        "workload": "py_lock",
        "pid": os.getpid(),
        "main_tid": threading.get_native_id(),
        "holder_tid": holder_info["tid"],
        "waiter_tids": waiter_tids,
        "hold_ms": hold_ms,
        "gap_ms": GAP_MS,
        "rounds": rounds,
        "acquisitions": state["acquisitions"],
        "round_windows_unix_nano": holder_info["windows"],
        "python_version": sys.version.split()[0],
        "executable": sys.executable,
    }
    sys.stdout.write(json.dumps(truth) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
