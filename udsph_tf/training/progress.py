"""A dependency-free console progress bar with ETA, written to stderr."""

import sys
import time


def _fmt_seconds(s):
    s = int(max(s, 0))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    """`update(n, **scalars)` redraws one line: done/total, percent, elapsed, ETA, scalars."""

    def __init__(self, total, desc="", enabled=True, stream=None, width=24, min_interval=0.2):
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval = min_interval
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def line(self, scalars=None):
        frac = min(self.done / self.total, 1.0)
        elapsed = time.monotonic() - self.start
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        tail = " ".join(f"{k}={v:.4g}" for k, v in (scalars or {}).items())
        eta_txt = _fmt_seconds(eta) if eta == eta else "--:--"
        return (f"{self.desc} [{bar}] {self.done}/{self.total} {frac:4.0%} "
                f"{_fmt_seconds(elapsed)}<{eta_txt} {tail}").rstrip()

    def update(self, n=1, **scalars):
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= self.min_interval or self.done >= self.total):
            self._last = now
            self.stream.write("\r" + self.line(scalars) + "\033[K")
            self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
