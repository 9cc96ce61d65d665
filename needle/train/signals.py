"""Stopping a run cleanly on Ctrl-C, SIGTERM and SIGHUP."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# -- stopping on Ctrl-C, SIGTERM and SIGHUP -------------------------------------------------

# SIGHUP (the terminal closed) stops a run like SIGTERM, where the platform has it.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@dataclass
class StopFlag:
    """Set by a signal handler (or a test); the run checks it after every step. `forced` is
    a second signal's number: it stopped the run at once (KeyboardInterrupt)."""

    signum: int | None = None
    forced: int | None = None

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signals(
    flag: StopFlag, *, on_signal: Callable[[int], None] | None = None
) -> Iterator[StopFlag]:
    """While active, each of STOP_SIGNALS asks the run to stop after the current step (it
    then writes a checkpoint); a second signal stops at once with KeyboardInterrupt, which
    still leaves the previous checkpoint whole. `on_signal(signum)` is called on every signal,
    after the flag is set and before that KeyboardInterrupt, so a front end can say what will
    happen. Outside the main thread, signals cannot be caught: the flag is returned untouched."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        first = not flag.requested
        if first:
            flag.request(signum)
        else:
            flag.forced = signum
        if on_signal is not None:
            on_signal(signum)
        if not first:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
