"""A dependency-free console progress display with ETA: a redrawn bar on a terminal, plain
lines at most every 10 s elsewhere (log files and CI consoles keep no carriage returns)."""

import sys
import time

PLAIN_INTERVAL = 10.0  # seconds between plain lines when the stream is not a terminal


def _fmt_seconds(s):
    s = int(max(s, 0))
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60:02d}:{s % 60:02d}"


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """`update(n, **scalars)` reports done/total, percent, elapsed, ETA and the scalars.

    On a terminal one line is redrawn in place (at most every `min_interval` s, default
    0.2). Otherwise (`terminal=None` asks the stream) each report is a plain line, written at
    most every `min_interval` s (default PLAIN_INTERVAL) and once at the end, so a short epoch
    gives one line.
    """

    def __init__(self, total, desc="", enabled=True, stream=None, width=24, min_interval=None,
                 terminal=None):
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.terminal = _is_terminal(self.stream) if terminal is None else terminal
        if min_interval is None:
            min_interval = 0.2 if self.terminal else PLAIN_INTERVAL
        self.min_interval = min_interval
        self.done = 0
        self.start = time.monotonic()
        # A plain line is due `min_interval` after the start; the bar draws at once.
        self._last = self.start if not self.terminal else float("-inf")
        self._scalars = {}
        self._written = -1  # `done` at the last write

    def line(self, scalars=None):
        frac = min(self.done / self.total, 1.0)
        elapsed = time.monotonic() - self.start
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        tail = " ".join(f"{k}={v:.4g}" for k, v in (scalars or {}).items())
        eta_txt = _fmt_seconds(eta) if eta == eta else "--:--"
        return (f"{self.desc} [{bar}] {self.done}/{self.total} {frac:4.0%} "
                f"{_fmt_seconds(elapsed)}<{eta_txt} {tail}").rstrip()

    def _write(self):
        text = self.line(self._scalars)
        self.stream.write("\r" + text + "\033[K" if self.terminal else text + "\n")
        self.stream.flush()
        self._written = self.done

    def update(self, n=1, **scalars):
        self.done += n
        self._scalars = scalars
        if not self.enabled:
            return
        now = time.monotonic()
        # On a terminal the last step is drawn at once; plain output waits for close().
        if now - self._last >= self.min_interval or (self.terminal and self.done >= self.total):
            self._last = now
            self._write()

    def close(self):
        if not self.enabled:
            return
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()
        elif self._written != self.done:
            self._write()  # the one line of an epoch shorter than min_interval
