"""Stops what is left of a local Ray instance once the sweep driver that started it is gone.

Ray's own processes share the driver's fate, but the agents its raylet starts (dashboard
agent, runtime-env agent) live on for about a minute after a ``kill -9`` of the driver. The
driver starts this script (stdlib only, run by path so it imports nothing of lossnet) right
after ``ray.init``::

    python reaper.py DRIVER_PID DRIVER_START_TIME EXCLUDED_PIDS

It watches the driver's descendants whose command line names Ray (those that were already
there before ``ray.init``, ``EXCLUDED_PIDS``, are never touched) and, when its stdin closes
(the driver shut Ray down and closed it, or the driver died, even by SIGKILL) or the driver
is gone, sends SIGTERM to each of them still alive (same pid and start time), then SIGKILL
to any left after a grace period, and exits. It ignores SIGINT, SIGTERM and SIGHUP, which
reach the whole process group: the driver handles those itself.

Example:
    >>> reap({})  # nothing known: nothing signalled
    []
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_SECONDS = 0.5
GRACE_SECONDS = 3.0


def proc_stat(pid: int) -> tuple[int, str, str] | None:
    """``(ppid, start_time, state)`` of ``pid`` from ``/proc`` (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), fields[19].decode(), fields[0].decode()
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, start: str) -> bool:
    """True while ``pid`` runs (not a zombie) with the start time it had when first seen
    (``start`` empty: any start time)."""
    st = proc_stat(pid)
    return st is not None and (st[1] == start or not start) and st[2] not in ("Z", "X")


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"ray" in fh.read()
    except OSError:
        return False


def descendants(root: int) -> dict[int, str]:
    """``{pid: start_time}`` of every process below ``root`` (Linux ``/proc``)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                children.setdefault(st[0], []).append((int(name), st[1]))
    out: dict[int, str] = {}
    stack = [root]
    while stack:
        for pid, start in children.get(stack.pop(), []):
            if pid not in out:
                out[pid] = start
                stack.append(pid)
    return out


def reap(known: dict[int, str], grace: float = GRACE_SECONDS) -> list[int]:
    """SIGTERM every process of ``known`` still alive, SIGKILL those left after ``grace`` s;
    returns the pids signalled."""
    targets = [pid for pid, start in known.items() if alive(pid, start)]
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p, known[p]) for p in targets):
        time.sleep(0.05)
    for pid in targets:
        if alive(pid, known[pid]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return targets


def watch(driver: int, driver_start: str, excluded: set[int]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    me = os.getpid()
    known: dict[int, str] = {}
    while True:
        if alive(driver, driver_start):
            for pid, start in descendants(driver).items():
                if pid != me and pid not in excluded and pid not in known and _is_ray(pid):
                    known[pid] = start
        else:
            break
        ready, _, _ = select.select([sys.stdin], [], [], POLL_SECONDS)
        if ready and not sys.stdin.buffer.read1(4096):
            break  # EOF: the driver closed the pipe (after ray.shutdown) or died
    reap(known)
    return 0


if __name__ == "__main__":
    _driver, _start = int(sys.argv[1]), sys.argv[2]
    _excluded = {int(p) for p in sys.argv[3].split(",") if p} if len(sys.argv) > 3 else set()
    sys.exit(watch(_driver, _start, _excluded))
