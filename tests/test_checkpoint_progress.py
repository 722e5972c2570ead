"""Console progress: a redrawn bar on a terminal, a few plain lines in a log or pipe."""

import io
import os

import pytest

from udsph_tf import progress
from udsph_tf.progress import Progress


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_a_short_epoch_is_one_plain_line(clock):
    out = io.StringIO()
    bar = Progress(500, "epoch 1/6", stream=out)
    assert not bar.terminal
    for _ in range(500):
        clock.now += 0.01  # 5 s in all
        bar.update(1, imgnet=1.5)
    assert out.getvalue() == ""  # nothing before the end
    bar.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and "\r" not in text and "\033" not in text
    assert "500/500" in text and "100%" in text and "imgnet=1.5" in text


def test_not_a_terminal_a_long_epoch_writes_a_line_every_10_s(clock):
    out = io.StringIO()
    bar = Progress(100, "epoch 2/6", stream=out)
    for _ in range(100):
        clock.now += 1.0  # 100 s in all
        bar.update(1, txtnet=2.0)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # at 10, 20, ..., 100 s; the last one is not repeated by close()
    assert lines[0].startswith("epoch 2/6") and "10/100" in lines[0] and "100/100" in lines[-1]
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_bar_is_redrawn_in_place(clock):
    out = _Terminal()
    bar = Progress(50, "epoch 1/2", stream=out)
    assert bar.terminal
    for _ in range(50):
        clock.now += 0.1
        bar.update(1, disc=0.25)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") >= 20 and text.count("\n") == 1 and "\033[K" in text
    assert "50/50" in text.split("\r")[-1]


def test_a_real_pipe_and_a_real_terminal_are_told_apart():
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as pipe:
        assert not Progress(3, stream=pipe).terminal
    os.close(read_fd)
    try:
        master, slave = os.openpty()
    except OSError:
        pytest.skip("no pseudo-terminal here")
    with os.fdopen(slave, "w") as tty:
        assert Progress(3, stream=tty).terminal
    os.close(master)


def test_disabled_writes_nothing(clock):
    out = io.StringIO()
    bar = Progress(3, stream=out, enabled=False)
    for _ in range(3):
        clock.now += 20
        bar.update(1)
    bar.close()
    assert out.getvalue() == ""
