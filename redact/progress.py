"""Progress of a long pass over frames: tqdm's bar on a terminal; elsewhere (a log file, a batch job's output),
where a bar is invisible until the end or a mess of carriage returns, a plain line at intervals."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Lines:
    """tqdm's update/close/set_postfix_str (and its `n`, `initial` and `total`) as a line every `every` seconds:
    what, frames done of how many, frames per second (of this run: not the `initial` frames a crashed run had done),
    the time left."""

    def __init__(self, total: int | None, desc: str, every: float, stream: TextIO, initial: int = 0):
        self.total, self.desc, self.every, self.stream = total, desc, every, stream
        self.n = self.initial = initial
        self.postfix = ""
        self.start = self.last = time.monotonic()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line(now - self.start) + "\n")
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        more = f", {self.postfix}" if self.postfix else ""
        if not self.total:
            return f"redact: {self.desc}: {self.n} frames, {rate:.1f} frames/s{more}"
        total = max(self.total, self.n)  # a container's frame count is an estimate
        left = f", ETA {_clock((total - self.n) / rate)}" if rate > 0 else ""
        return (f"redact: {self.desc}: {self.n}/{total} frames ({100 * self.n / total:.0f}%), {rate:.1f} frames/s"
                f"{left}{more}")

    def close(self) -> None:
        pass

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_progress(total: int | None, desc: str, every: float | None, stream: TextIO | None = None,
                   initial: int = 0) -> tqdm | Lines:
    """A progress reporter for `total` frames (None: unknown) of `desc`, `initial` of them done before (by a run
    that was stopped): none when `every` is None, a bar when `stream` (stderr by default) is a terminal, else a
    line every `every` seconds."""
    stream = stream or sys.stderr
    if every is not None and not stream.isatty():
        return Lines(total, desc, every, stream, initial)
    return tqdm(total=total, initial=initial, unit="frame", desc=desc, leave=False, file=stream,
                disable=every is None)
