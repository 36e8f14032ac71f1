"""deeplab_tf.progress: one line redrawn on a terminal, plain periodic lines elsewhere."""
import io

import pytest

from deeplab_tf import progress as progress_lib
from deeplab_tf.progress import Progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(progress_lib.time, "monotonic", fake)
    return fake


def test_not_a_terminal_writes_a_plain_line_per_interval_and_one_at_the_end(clock):
    out = io.StringIO()
    bar = Progress(100, unit="image", desc="eval", stream=out, interval=10)
    assert not bar.tty   # a StringIO is not a terminal
    for i in range(1, 101):   # one image a second: 100 s
        clock.now += 1
        bar.update(i)
    bar.close()
    bar.close()   # once
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "\b" not in text
    lines = text.splitlines()
    assert len(lines) == 100 // 10 + 1   # at 10 s, 20 s, ... 100 s, and the end
    assert lines[0].startswith("eval 10/100 [==>") and " 10%" in lines[0]
    assert "ETA 1:30" in lines[0] and "1.0 image/s" in lines[0]
    assert lines[-1].startswith("eval 100/100 [" + "=" * 30 + "] 100%")
    assert "ETA" not in lines[-1]


def test_terminal_redraws_one_line_in_place(clock):
    out = io.StringIO()
    bar = Progress(4, unit="step", stream=out, tty=True)
    for step in range(1, 5):
        clock.now += 2   # 2 s a step
        bar.update(step, {"loss": 0.5 / step})
    bar.close()
    text = out.getvalue()
    assert "\x1b" not in text   # no escape codes, only carriage returns
    assert text.count("\r") == 5 and text.endswith("\n") and text.count("\n") == 1
    draws = text.split("\r")[1:]
    assert draws[0].startswith("1/4 [======>.") and "2.0 s/step" in draws[0]
    assert "ETA 0:06" in draws[0] and "loss 0.5" in draws[0]
    assert draws[-1].rstrip("\n").startswith("4/4 [") and "loss 0.125" in draws[-1]
    # A shorter line covers the longer one before it.
    assert all(len(b.rstrip("\n")) >= len(a.rstrip("\n").rstrip())
               for a, b in zip(draws, draws[1:]))


def test_unknown_total_counts_without_a_bar(clock):
    out = io.StringIO()
    with Progress(None, unit="image", stream=out, interval=0) as bar:
        clock.now += 4
        bar.add(2)
    assert out.getvalue().splitlines() == ["2 images - 0:04, 2.0 s/image"] * 2


def test_resumed_count_rates_from_where_it_started(clock):
    out = io.StringIO()
    bar = Progress(1000, stream=out, interval=0, initial=900)
    clock.now += 10
    bar.update(950)   # 50 steps in 10 s: 5 steps/s, 50 to go: 10 s
    assert "950/1000" in out.getvalue() and "5.0 step/s" in out.getvalue()
    assert "ETA 0:10" in out.getvalue()


def test_disabled_or_broken_stream_writes_nothing(clock):
    out = io.StringIO()
    with Progress(3, stream=out, enabled=False, interval=0) as bar:
        bar.add(3)
    assert out.getvalue() == ""
    closed = io.StringIO()
    closed.close()
    with Progress(3, stream=closed, interval=0) as bar:   # no error: progress is optional
        bar.add(3)
