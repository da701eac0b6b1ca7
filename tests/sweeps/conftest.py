"""Fixtures of the sweep tests: test-only task plugins with their spec files, and the helpers of
the tests that run a sweep in a subprocess, kill it and resume."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from lossnet.sweeps.store import ResultsStore, process_alive

# the command line of a sweep subprocess: python -c SWEEP spec db executor workers
SWEEP = ("import sys\nfrom lossnet.sweeps.runner import run_sweep\n"
         "run_sweep(sys.argv[1], sys.argv[2], executor=sys.argv[3], workers=int(sys.argv[4]), progress=False)\n")


@pytest.fixture()
def plugin_spec(tmp_path):
    """``make(module, source, task, seeds, spec_name, **settings) -> (spec path, plugin folder)``: the
    test-only task module ``module`` (its ``source`` registers ``task``) written to ``tmp_path/plugins``
    and importable (here through ``sys.path``, in a subprocess through :func:`sweep_processes`'s
    ``start``), and ``tmp_path/<spec_name>.toml``: a grid of ``task`` over ``seeds`` with ``settings``.
    ``make`` may be called again (another spec, the same plugin); the plugin goes at teardown."""
    plugin_dir = tmp_path / "plugins"
    installed: list[str] = []

    def make(module: str, source: str, task: str, seeds, spec_name: str = "probe", **settings):
        if module not in installed:
            plugin_dir.mkdir(exist_ok=True)
            (plugin_dir / f"{module}.py").write_text(source)
            sys.path.insert(0, str(plugin_dir))
            installed.append(module)
        spec = tmp_path / f"{spec_name}.toml"
        spec.write_text(f'name = "{spec_name}"\nimports = ["{module}"]\n[grid]\ntasks = ["{task}"]\n'
                        f"seeds = {json.dumps(list(seeds))}\n[tasks.{task}]\n"
                        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
        return spec, plugin_dir

    yield make
    for module in installed:
        sys.path.remove(str(plugin_dir))
        sys.modules.pop(module, None)


def _count(db: Path, sql: str) -> int:
    """``sql``'s one number from the results store ``db`` (0 while it or its tables do not exist yet)."""
    if not db.exists():
        return 0
    for attempt in range(20):
        try:
            with sqlite3.connect(db, timeout=30) as conn:
                return conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0
        except sqlite3.DatabaseError as exc:
            # a raw reader that opens the WAL file just as a sweep's last connection closes can
            # see "malformed" once (the store retries such reads too); ask again
            assert "malformed" in str(exc) and attempt < 19, exc
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _start(code: str, args, plugin_dir: Path, **env) -> subprocess.Popen:
    """``python -c code *args`` with ``plugin_dir`` importable and ``env`` added; stderr is a pipe."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for_workers_gone(db: Path, timeout: float = 20.0) -> None:
    """Workers of a killed ``processes`` sweep die with their parent (PR_SET_PDEATHSIG)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with sqlite3.connect(db, timeout=30) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM runs WHERE status = 'running'")]
        if not any(process_alive(p) for p in pids):
            return
        time.sleep(0.1)
    raise AssertionError("worker processes outlived their killed parent")


def _kill_after_a_claim(code: str, args, plugin_dir: Path, db: Path, delay: float, **env) -> bool:
    """Start the sweep ``python -c code *args`` (:func:`_start`), wait until it has claimed a run in the
    results store ``db``, SIGKILL it ``delay`` seconds later and wait for it and its workers; returns
    whether it was killed (False: it had finished first)."""
    claimed = _count(db, "SELECT COUNT(*) FROM events WHERE event = 'claimed'")
    proc = _start(code, args, plugin_dir, **env)
    deadline = time.time() + 300  # a loaded machine starts interpreters slowly
    while _count(db, "SELECT COUNT(*) FROM events WHERE event = 'claimed'") <= claimed:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the sweep never started"
        time.sleep(0.01)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    _wait_for_workers_gone(db)
    return killed


def _check_exactly_once(db: Path, n: int) -> None:
    """``n`` runs recorded in ``db``, each finished once, never claimed again after that, none discarded."""
    store = ResultsStore(db)
    events = store.events()
    ids = [r.id for r in store.records()]
    assert len(ids) == n
    for rid in ids:
        kinds = [e["event"] for e in events if e["run_id"] == rid]
        assert kinds.count("finished") == 1, (rid, kinds)
        assert "claimed" not in kinds[kinds.index("finished"):], (rid, kinds)  # never redone once finished
        assert "discarded" not in kinds


@pytest.fixture()
def sweep_processes():
    """The helpers of the kill-and-resume tests: ``SWEEP`` (the code of a sweep subprocess),
    ``count(db, sql)``, ``start(code, args, plugin_dir, **env)``,
    ``kill_after_a_claim(code, args, plugin_dir, db, delay, **env)``,
    ``wait_for_workers_gone(db)`` and ``check_exactly_once(db, n)``."""
    return types.SimpleNamespace(SWEEP=SWEEP, count=_count, start=_start, kill_after_a_claim=_kill_after_a_claim,
                                 wait_for_workers_gone=_wait_for_workers_gone, check_exactly_once=_check_exactly_once)
