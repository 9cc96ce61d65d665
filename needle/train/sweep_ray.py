"""A sweep's trials as Ray tasks (`needle sweep --ray ADDRESS`), for sweeps past one machine.

Each trial is a Ray remote task given the trial's resolved config (and, to resume an
interrupted trial, its run folder's files). It trains into a temporary folder on whatever node
it lands on and returns that folder's files, names and bytes (a config, metrics, checkpoints
and a summary: small). The driver, the process that started the sweep, writes them into the
sweep folder atomically (`needle.fileio`), so the run folders land on its machine, with the
paths inside `summary.json` and `config.yaml` rewritten from the node's temporary folder to
theirs. Ctrl-C cancels the tasks not yet finished (`ray.cancel`: a running trial is asked to
stop as Ctrl-C would ask it, and the checkpoint it returns then is kept for the rerun).

Ray is an optional extra, imported only here and only when a sweep asks for it. Every node
needs needle importable (and any `data.path` at the same place); the spirals and other
built-in data sets need nothing.
"""

from __future__ import annotations

import json
import shlex
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from needle.errors import NeedleError, UsageError
from needle.fileio import TEMP_PREFIX, write_bytes
from needle.train.rundir import new_run_dir
from needle.train.signals import StopFlag

RAY_MISSING = "--ray needs Ray: pip install 'needle[ray]'"
ADDRESSES = "auto, ray://HOST:PORT or local"
CONNECT_SECONDS = 5.0  # how long a cluster's address may take to accept a connection


def import_ray() -> Any:
    """The `ray` module, or the one-line UsageError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def check_cluster(address: str) -> None:
    """What can be known of `--ray address` before a sweep writes anything: Ray is installed,
    the address is given and, for HOST:PORT, something answers there. A process already
    connected (a program, a test) keeps its connection, whatever the address."""
    ray = import_ray()
    if ray.is_initialized():
        return
    if not address.strip():
        raise UsageError(f"--ray '{address}': give a cluster's address: {ADDRESSES}")
    _check_answers(address)


def _connect(ray: Any, address: str) -> bool:
    """Connect to the cluster at `address` (`local` starts one for the sweep), checked first
    by `check_cluster`; True when this call connected, so the sweep disconnects at its end.
    A process already connected keeps its connection."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning")
    except (ConnectionError, RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise NeedleError(
            f"--ray {address}: cannot connect to a Ray cluster ({reason}); give {ADDRESSES}"
        ) from None
    return True


def _check_answers(address: str) -> None:
    """NeedleError unless something accepts a connection at a HOST:PORT `address` (or
    ray://HOST:PORT) within CONNECT_SECONDS. `ray.init` retries an address where nothing
    listens for minutes, printing a warning every few seconds; this says so at once.
    `auto`, `local` and addresses without a port are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise NeedleError(
            f"--ray {address}: cannot connect to a Ray cluster (nothing answers at "
            f"{host}:{port}: {reason}); give {ADDRESSES}"
        ) from None


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (a killed write's leftovers aside), by its relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(TEMP_PREFIX)
    }


def _relocated(name: str, data: bytes, before: str, after: str) -> bytes:
    """`data` of the file `name` with the run folder's path `before` written as `after`, in the
    form each file writes a path (JSON strings in .json, a shell word in config.yaml)."""
    if name.endswith(".json"):
        pairs = [(json.dumps(before)[1:-1], json.dumps(after)[1:-1])]
    elif name.endswith(".yaml"):
        pairs = [(shlex.quote(before), shlex.quote(after))]
    else:
        return data
    text = data.decode("utf-8")
    for old, new in pairs:
        text = text.replace(old, new)
    return text.encode("utf-8")


def write_folder(folder: Path, files: dict[str, bytes], remote: str) -> None:
    """Write `files` (from the run folder `remote` on a node) into `folder`, each atomically."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, _relocated(name, data, remote, str(folder)))


def _trial_task(
    config: Any, trial_id: str, folder: str | None, files: dict[str, bytes]
) -> tuple[dict, str, dict]:
    """On a node: train `config` (or resume the run `folder` of the driver's, its `files`)
    in a temporary folder; (the outcome as `outcome_of` gives it, that folder, its files)."""
    from needle.train.runner import resume, train
    from needle.train.signals import stop_on_signals
    from needle.train.sweep import outcome_of

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="needle-trial-") as tmp:
        try:
            with stop_on_signals(StopFlag()) as stop:  # ray.cancel arrives as Ctrl-C would
                if folder:
                    run_dir = Path(tmp) / f"trial-{trial_id}"
                    write_folder(run_dir, files, folder)
                    result = resume(run_dir, callbacks=None, stop=stop)
                else:
                    result = train(config, out=tmp, name=f"trial-{trial_id}", stop=stop)
        except NeedleError as err:
            return {"status": f"failed: {err}", "seconds": time.perf_counter() - start}, "", {}
        return outcome_of(result), str(result.run_dir), read_folder(result.run_dir)


def run_on_ray(
    address: str,
    config_path: str,
    todo: Sequence[tuple[Any, str | None]],
    out: Path,
    stop: StopFlag,
    record: Callable[[Any, dict[str, Any]], None],
) -> None:
    """Run the `(trial, run folder to resume or None)` pairs of `todo` as tasks on the Ray
    cluster at `address`, writing each returned run folder under `out` and passing the trial
    and its outcome to `record` as it ends. A trial cancelled before it started is left out."""
    from needle.train.config import load_config

    ray = import_ray()
    connected = _connect(ray, address)
    try:
        task = ray.remote(num_cpus=1)(_trial_task)
        pending: dict[Any, tuple[Any, str | None]] = {}
        for trial, resume_dir in todo:
            config = load_config(config_path, trial.overrides)
            files = read_folder(Path(resume_dir)) if resume_dir else {}
            pending[task.remote(config, trial.id, resume_dir, files)] = (trial, resume_dir)
        cancelled = False
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2)
            if stop.requested and not cancelled:
                cancelled = True
                for ref in pending:
                    ray.cancel(ref)
            for ref in done:
                trial, resume_dir = pending.pop(ref)
                try:
                    outcome, remote, files = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    continue
                except ray.exceptions.RayError as err:
                    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    outcome, remote, files = {"status": f"failed: {reason}"}, "", {}
                if files:
                    name = f"trial-{trial.id}"
                    folder = Path(resume_dir) if resume_dir else new_run_dir(out, name)
                    write_folder(folder, files, remote)
                    outcome["run_dir"] = str(folder)
                record(trial, outcome)
    finally:
        if connected:
            ray.shutdown()
