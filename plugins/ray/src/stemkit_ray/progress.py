"""The driver's progress: songs done / failed / cached of the total, throughput and time left, in constant
memory and constant time per song (a run of 50,000 songs is a run of 50,000 counter increments).

:class:`Tally` counts; :class:`ProgressBar` shows one line on a terminal (rich, refreshed a few times a second
whatever the rate of songs) and logs a summary line at most every ``log_every`` seconds otherwise (logger
``stemkit.ray``; stemkit installs no handler: the application's logging decides).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

__all__ = ["ProgressBar", "Tally"]

_log = logging.getLogger("stemkit.ray")
#: throughput is measured over this many recent songs (a moving window: it follows a cluster that scales)
_RATE_WINDOW = 256


class Tally:
    """Counts of a run: ``done`` (separated now), ``cached`` (answered from the result cache) and ``failed``
    (each is also counted in ``finished``), with throughput over the last songs and an estimate of time left."""

    def __init__(self, total: int, *, clock: Callable[[], float] | None = None) -> None:
        self.total = total
        self.done = 0
        self.cached = 0
        self.failed = 0
        self._clock = clock or time.monotonic
        self.started = self._clock()
        self._recent: collections.deque[float] = collections.deque(maxlen=_RATE_WINDOW)

    @property
    def finished(self) -> int:
        return self.done + self.cached + self.failed

    def add(self, status: str) -> None:
        """One song finished: ``"ok"``, ``"cached"`` or ``"failed"``."""
        if status == "cached":
            self.cached += 1
        elif status == "failed":
            self.failed += 1
        else:
            self.done += 1
        self._recent.append(self._clock())

    def rate(self) -> float | None:
        """Songs per second over the recent window (None until two songs have finished)."""
        if len(self._recent) < 2:
            return None
        if len(self._recent) == _RATE_WINDOW:  # the songs between the oldest and newest kept
            span, count = self._recent[-1] - self._recent[0], len(self._recent) - 1
        else:  # every song since the start
            span, count = self._recent[-1] - self.started, self.finished
        return count / span if span > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the current rate (None while unknown)."""
        rate = self.rate()
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        return left / rate if rate else None

    def describe(self) -> str:
        rate = self.rate()
        eta = self.eta()
        speed = f"{rate * 60:.1f} songs/min" if rate else "-- songs/min"
        left = _duration(eta) if eta is not None else "--"
        return (
            f"{self.finished}/{self.total} songs: {self.done} done, {self.cached} cached, {self.failed} failed; "
            f"{speed}, {left} left"
        )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """One bar for the whole run. ``show`` None: on a terminal only (stderr)."""

    def __init__(self, tally: Tally, *, show: bool | None = None, log_every: float = 30.0) -> None:
        self.tally = tally
        console = Console(stderr=True)
        self.interactive = console.is_terminal if show is None else show
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._log_every = log_every
        self._logged = time.monotonic()
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]separating"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"), TextColumn("{task.fields[speed]}"),
                TextColumn("ETA {task.fields[eta]}"), TimeElapsedColumn(), console=console, refresh_per_second=4,
            )  # fmt: skip
            counts, speed, eta = self._fields()
            self._task = self._progress.add_task("songs", total=tally.total, counts=counts, speed=speed, eta=eta)

    def _fields(self) -> tuple[str, str, str]:
        """(counts, speed, time left) as the bar shows them."""
        rate = self.tally.rate()
        eta = self.tally.eta()
        return (
            f"{self.tally.done} done · {self.tally.cached} cached · {self.tally.failed} failed",
            f"{rate * 60:.1f}/min" if rate else "--/min",
            _duration(eta) if eta is not None else "--",
        )

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def update(self) -> None:
        """Redraw (the terminal bar) or log now and then (otherwise); cheap to call per song."""
        if self._progress is not None and self._task is not None:
            counts, speed, eta = self._fields()
            self._progress.update(self._task, completed=self.tally.finished, counts=counts, speed=speed, eta=eta)
            return
        now = time.monotonic()
        if now - self._logged >= self._log_every:
            self._logged = now
            _log.info("%s", self.tally.describe())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self.update()
            self._progress.stop()
        _log.info("%s", self.tally.describe())
