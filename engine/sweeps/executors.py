"""Running a sweep: which grid points still need a run, the sweep file, and two executors.

- `LocalExecutor`: N worker processes (`python -m engine.sweeps.worker`), each one run file.
- `RayExecutor`: the same runs as Ray tasks, each asking for its share of a GPU or CPUs.

Resuming needs no bookkeeping of its own: a grid point is done when the runs folder holds a
completed run with the same experiment key (engine.sweeps.grid.experiment_key), so a sweep killed
at any moment and started again redoes only the points without one. Torch-free.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ConfigError
from ..files import read_json
from ..speed.cores import available_cores, cpu_threads_for
from ..store import RunEntry, RunStore, new_run_id, now_iso, write_json_atomic
from .grid import Point, Sweep, experiment_key

SWEEPS_DIR = "sweeps"
SWEEP_SCHEMA = 1


@dataclass
class Job:
    point: Point
    run_id: str


@dataclass
class JobResult:
    job: Job
    status: str          # completed, failed, cancelled, or error (it never started)
    error: str | None = None


def sweep_path(runs_root: Path, sweep_id: str) -> Path:
    return Path(runs_root) / SWEEPS_DIR / f"{sweep_id}.json"


def find_sweep(runs_root: Path, name: str) -> Path:
    """A sweep file from its id, or its path."""
    for path in (Path(name), sweep_path(runs_root, name), sweep_path(runs_root, Path(name).stem)):
        if path.is_file():
            return path
    raise ConfigError(f"no sweep {name!r} under {Path(runs_root) / SWEEPS_DIR} (see `sltui sweep --dry-run`)")


def runs_by_key(source: RunStore | Iterable[RunEntry]) -> dict[str, list[dict[str, Any]]]:
    """Every readable run document of the folder (or of entries already read, such as the
    TUI's cached index), by experiment key, with its effective status."""
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in source.entries() if isinstance(source, RunStore) else source:
        if entry.doc is None or not isinstance(entry.doc.get("config"), dict) or entry.doc.get("source_run"):
            continue
        out.setdefault(experiment_key(entry.doc["config"]), []).append({**entry.doc, "status": entry.status})
    return out


def pending(points: Iterable[Point], store: RunStore) -> tuple[list[Point], dict[str, str]]:
    """(points still to run, {key: id of its completed run} for those already done)."""
    have = runs_by_key(store)
    todo, done = [], {}
    for point in points:
        completed = [d for d in have.get(point.key, []) if d["status"] == "completed"]
        if completed:
            done[point.key] = completed[0]["id"]
        else:
            todo.append(point)
    return todo, done


class SweepFile:
    """`<runs>/sweeps/<id>.json`: the grid, and per point its config, runs and status."""

    def __init__(self, runs_root: Path, sweep: Sweep, points: list[Point]) -> None:
        self.path = sweep_path(runs_root, sweep.sweep_id())
        self._lock = threading.Lock()
        old = self._read_old()
        self.doc: dict[str, Any] = {
            "schema": SWEEP_SCHEMA, "id": sweep.sweep_id(), "created": old.get("created", now_iso()),
            "updated": now_iso(), "status": "running", **sweep.to_dict(), "points": [],
        }
        old_points = {point_key(p): p for p in old.get("points", []) if isinstance(p, dict)}
        for point in points:
            previous = old_points.get(point.key, {})
            self.doc["points"].append({"key": point.key, "config": point.config.to_dict(),
                                       "runs": list(previous.get("runs", [])),
                                       "status": previous.get("status", "pending"), "error": previous.get("error")})
        self._by_key = {p["key"]: p for p in self.doc["points"]}

    def _read_old(self) -> dict[str, Any]:
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or broken: the runs folder still says what is done
            return {}
        return old if isinstance(old, dict) else {}

    def mark(self, key: str, status: str, run_id: str | None = None, error: str | None = None) -> None:
        with self._lock:
            point = self._by_key[key]
            if run_id and run_id not in point["runs"]:
                point["runs"].append(run_id)
            point["status"], point["error"] = status, error
            self.save()

    def finish(self, status: str) -> None:
        with self._lock:
            self.doc["status"] = status
            self.save()

    def save(self) -> None:
        self.doc["updated"] = now_iso()
        write_json_atomic(self.path, self.doc)


def load_sweep_doc(path: Path) -> dict[str, Any]:
    doc = read_json(path, "sweep file")
    if not isinstance(doc, dict) or not isinstance(doc.get("points"), list):
        raise ConfigError(f"{path} is not a sweep file (no points)")
    return doc


def sweep_run_docs(runs_root: Path, sweep_doc: dict[str, Any], continue_twins: bool = False) -> list[dict[str, Any]]:
    """The run documents of a sweep's points: every run of the folder with a point's key
    (and with continue_twins, as point_run_docs)."""
    return point_run_docs(sweep_doc, runs_by_key(RunStore(runs_root)), continue_twins)


def point_key(point: dict[str, Any]) -> str | None:
    """A stored sweep point's experiment key, recomputed from the config it stored (so a
    sweep written by an older version, whose keys were computed another way, finds its
    runs); the stored key only where the point has no config."""
    config = point.get("config")
    return experiment_key(config) if isinstance(config, dict) else point.get("key")


def point_run_docs(sweep_doc: dict[str, Any], have: dict[str, list[dict[str, Any]]],
                   continue_twins: bool = False) -> list[dict[str, Any]]:
    """The run documents of a sweep's points among `have` (runs_by_key), each once, so
    that one read of the runs folder serves several sweeps. With continue_twins (the
    arena's reports), a reacting point (`on_flag` stop) brings the runs of its `continue`
    twin too: an arena's verdicts come from those, the reacting run adds what the clients
    deployed (docs/protocol.md section 12a), so an arena of reacting runs alone still has
    cells wherever its twins were run."""
    docs: dict[Any, dict[str, Any]] = {}
    for point in sweep_doc["points"]:
        if isinstance(point, dict):
            keys = [point_key(point)]
            config = point.get("config")
            if continue_twins and isinstance(config, dict) and config.get("on_flag") == "stop":
                keys.append(experiment_key({**config, "on_flag": "continue"}))
            for key in keys:
                for doc in have.get(key, []):
                    docs.setdefault(doc.get("id") or id(doc), doc)
    return list(docs.values())


# ------------------------------------------------------------------ executors
def threads_per_job(jobs: int) -> int:
    """Torch threads for each of `jobs` parallel runs: never more threads than cores in all."""
    return cpu_threads_for(jobs, available_cores())


def _die_with_parent() -> None:
    """In the child: get SIGTERM (cancel cleanly) if the sweep process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


Callback = Callable[[Job], None]
ResultCallback = Callable[[JobResult], None]


class LocalExecutor:
    """Runs jobs in up to `jobs` worker processes at once; `stop` cancels the running ones."""

    def __init__(self, runs_root: Path, jobs: int, logs: Path) -> None:
        self.runs_root, self.jobs, self.logs = Path(runs_root), jobs, Path(logs)
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _run_one(self, job: Job, stop: threading.Event) -> JobResult:
        if stop.is_set():
            return JobResult(job, "cancelled")
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_job(self.jobs))}
        cmd = [sys.executable, "-m", "engine.sweeps.worker", job.point.given.to_json(), job.run_id, str(self.runs_root)]
        with open(self.logs / f"{job.run_id}.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
            with self._lock:
                self._procs[job.run_id] = proc
            try:
                code = proc.wait()
            finally:
                with self._lock:
                    self._procs.pop(job.run_id, None)
        return _result_from(job, code, self.logs / f"{job.run_id}.log")

    def cancel_all(self) -> None:
        with self._lock:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

    def start(self) -> None:
        """Nothing to connect to (RayExecutor connects here)."""

    def run(self, jobs: list[Job], stop: threading.Event, on_start: Callback, on_end: ResultCallback) -> None:
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="sweep") as pool:
            def wait_some(running: list) -> list[tuple[Any, JobResult | None]]:
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                return [(future, future.result()) for future in done]

            schedule(jobs, self.jobs, stop, on_start, on_end,
                     submit=lambda job: pool.submit(self._run_one, job, stop),
                     cancel=lambda running: self.cancel_all(), wait_some=wait_some, store=RunStore(self.runs_root))


def reserve_job(job: Job, store: RunStore) -> Job:
    """`job` with a run id whose folder this process has just made (RunStore.reserve): its
    own id where no other run took it since make_jobs drew it, else a fresh one. Two sweeps
    started in the same second draw ids from the same second, setting and 4 random hex
    digits; without the folder made first, the second's worker found the first's run file
    and stopped (RunIdTaken)."""
    run_id = store.reserve(lambda n: job.run_id if n == 0 else new_run_id(job.point.config))
    return job if run_id == job.run_id else Job(job.point, run_id)


def release_job(job: Job, store: RunStore) -> None:
    """Remove the folder reserve_job made where its worker never wrote a run file."""
    if not store.path(job.run_id).exists():
        store.release(job.run_id)


def schedule(jobs: list[Job], capacity: int, stop: threading.Event, on_start: Callback, on_end: ResultCallback,
             submit: Callable[[Job], Any], cancel: Callable[[list], None],
             wait_some: Callable[[list], list[tuple[Any, JobResult | None]]],
             store: RunStore | None = None) -> None:
    """Keep up to `capacity` jobs running until all have ended: `submit(job)` starts one
    and returns a handle, `wait_some(handles)` returns (handle, result) for those that
    ended (waiting up to about half a second), `cancel(handles)` stops the running ones
    once `stop` is set; the jobs not started then are dropped. A result of None means the
    handle's job was cancelled. With `store`, each job's run folder is made as it starts
    (reserve_job), and removed again where no run file came of it."""
    queue = list(jobs)
    running: dict[Any, Job] = {}
    while queue or running:
        while queue and len(running) < capacity and not stop.is_set():
            job = queue.pop(0)
            if store is not None:
                job = reserve_job(job, store)
            on_start(job)
            running[submit(job)] = job
        if stop.is_set():
            cancel(list(running))
            queue.clear()
        if not running:
            break
        for handle, result in wait_some(list(running)):
            job = running.pop(handle)
            if store is not None:
                release_job(job, store)
            on_end(result if result is not None else JobResult(job, "cancelled"))


def _result_from(job: Job, code: int, log: Path) -> JobResult:
    status = {0: "completed", 1: "failed", 130: "cancelled", 2: "error"}.get(code, "failed")
    if code < 0:  # killed by a signal
        status = "cancelled" if code in (-signal.SIGTERM, -signal.SIGINT) else "failed"
    error = None
    if status in ("failed", "error"):
        try:
            lines = [line for line in log.read_text().splitlines() if line.strip()]
            error = lines[-1] if lines else f"exit code {code}"
        except OSError:
            error = f"exit code {code}"
    return JobResult(job, status, error)


class RayExecutor:
    """The same jobs as Ray tasks (a local instance, or `address` of a cluster sharing the runs folder)."""

    def __init__(self, runs_root: Path, jobs: int, address: str | None, gpus_per_job: float) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'sltui[ray]' (or pip install ray)") from None
        self.runs_root, self.jobs, self.address, self.gpus_per_job = Path(runs_root), jobs, address, gpus_per_job

    def start(self) -> None:
        """Connect to Ray (a cluster at `address`, or a new local instance). Call this
        before installing signal handlers: ray.init installs its own. An address where
        nothing answers is a one-line ConfigError, not a hang."""
        import ray

        if self.address:
            _check_reachable(self.address)
        if ray.is_initialized():
            return
        try:
            if self.address:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray's ConnectionError, RuntimeError, ...
            where = f"--ray-address {self.address}" if self.address else "a local Ray instance"
            raise ConfigError(f"{where}: Ray did not start ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None

    def run(self, jobs: list[Job], stop: threading.Event, on_start: Callback, on_end: ResultCallback) -> None:
        import ray

        self.start()
        threads = threads_per_job(self.jobs)
        task = ray.remote(num_cpus=threads, num_gpus=self.gpus_per_job, max_retries=0)(_ray_task)
        by_ref: dict[Any, Job] = {}

        def submit(job: Job) -> Any:
            ref = task.remote(job.point.given.to_json(), job.run_id, str(self.runs_root), threads)
            by_ref[ref] = job
            return ref

        def cancel(running: list) -> None:
            for ref in running:
                ray.cancel(ref)

        def wait_some(running: list) -> list[tuple[Any, JobResult | None]]:
            ready, _ = ray.wait(running, num_returns=1, timeout=0.5)
            ended = []
            for ref in ready:
                job = by_ref.pop(ref)
                try:
                    status, error = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a cancelled or crashed task
                    status, error = ("cancelled", None) if stop.is_set() else ("failed", str(exc).splitlines()[0])
                ended.append((ref, JobResult(job, status, error)))
            return ended

        schedule(jobs, self.jobs, stop, on_start, on_end, submit, cancel, wait_some, store=RunStore(self.runs_root))


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """host:port or ray://host:port must accept a TCP connection ("auto" and other forms
    are left to Ray)."""
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc})") from None


def _ray_task(config_json: str, run_id: str, runs_root: str, threads: int) -> tuple[str, str | None]:
    from .worker import run_point

    return run_point(config_json, run_id, runs_root, threads=threads)


def make_jobs(points: list[Point]) -> list[Job]:
    """One job per point, each with a fresh run id (unique even within one second)."""
    jobs: list[Job] = []
    taken: set[str] = set()
    for point in points:
        run_id = new_run_id(point.config)
        while run_id in taken:
            run_id = new_run_id(point.config)
        taken.add(run_id)
        jobs.append(Job(point, run_id))
    return jobs
