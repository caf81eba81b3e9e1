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
    """tqdm's update/close (and its `n` and `total`) as a line every `every` seconds: what, frames done of how many,
    frames per second, the time left."""

    def __init__(self, total: int | None, desc: str, every: float, stream: TextIO):
        self.total, self.desc, self.every, self.stream = total, desc, every, stream
        self.n = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.stream.write(self.line(now - self.start) + "\n")
            self.stream.flush()

    def line(self, elapsed: float) -> str:
        rate = self.n / elapsed if elapsed > 0 else 0.0
        if not self.total:
            return f"redact: {self.desc}: {self.n} frames, {rate:.1f} frames/s"
        total = max(self.total, self.n)  # a container's frame count is an estimate
        left = f", ETA {_clock((total - self.n) / rate)}" if rate > 0 else ""
        return f"redact: {self.desc}: {self.n}/{total} frames ({100 * self.n / total:.0f}%), {rate:.1f} frames/s{left}"

    def close(self) -> None:
        pass

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_progress(total: int | None, desc: str, every: float | None, stream: TextIO | None = None) -> tqdm | Lines:
    """A progress reporter for `total` frames (None: unknown) of `desc`: none when `every` is None, a bar when
    `stream` (stderr by default) is a terminal, else a line every `every` seconds."""
    stream = stream or sys.stderr
    if every is not None and not stream.isatty():
        return Lines(total, desc, every, stream)
    return tqdm(total=total, unit="frame", desc=desc, leave=False, file=stream, disable=every is None)
