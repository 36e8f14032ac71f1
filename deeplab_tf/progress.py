"""One progress display for every long loop (training, precise BN, evaluation, prediction,
dataset conversion), on stderr, so stdout keeps the results.

On a terminal: one line redrawn in place with a carriage return (at most every
REFRESH_S), a bar when the total is known, the rate, the ETA and the loop's values. When
stderr is not a terminal (a log file, a pipe, a batch job): plain lines, one at most every
INTERVAL_S seconds and one at the end, with no carriage returns and no escape codes.
TensorFlow-free (the dataset writer's workers import it).

    bar = Progress(total=100, unit="step", desc="train")
    for step in range(1, 101):
        ...
        bar.update(step, {"loss": loss})
    bar.close()
"""
import sys
import time

INTERVAL_S = 10.0   # not a terminal: a line at most this often
REFRESH_S = 0.1     # a terminal: redraws at most this often
WIDTH = 30          # characters of the bar


class Progress:
    """Progress of `total` units (None: unknown), from 0.

    Args:
      total: the number of units when known (the bar and the ETA need it).
      unit: what is counted, e.g. "step", "image", "example"; rates are per unit.
      desc: a short label before the count (e.g. the split being written).
      enabled: False shows nothing (e.g. a worker that is not the chief).
      stream: where to write; default sys.stderr at each write.
      interval: seconds between plain lines when `stream` is not a terminal.
      tty: overrides the terminal detection (tests).
      initial: the count it starts from (a resumed run): rates count from there.
    """

    def __init__(self, total=None, unit="step", desc="", enabled=True, stream=None,
                 interval=INTERVAL_S, tty=None, initial=0):
        self.total = total if total is None or total > 0 else None
        self.unit, self.desc, self.enabled = unit, desc, enabled
        self._stream, self.interval = stream, interval
        self.tty = tty if tty is not None else _isatty(self.stream)
        self.current = self.initial = initial
        self.values = {}
        self.start = self._last = time.monotonic()
        self._width, self._closed = 0, False

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def update(self, current, values=None):
        """Sets the count to `current` (and the latest `values`, e.g. {"loss": 0.3})."""
        self.current = current
        if values:
            self.values.update(values)
        if not self.enabled or self._closed:
            return
        now = time.monotonic()
        if now - self._last >= (REFRESH_S if self.tty else self.interval):
            self._last = now
            self._write(now)

    def add(self, n=1, values=None):
        self.update(self.current + n, values)

    def close(self):
        """Writes the final line once (also after an error: how far it got)."""
        if self.enabled and not self._closed:
            self._write(time.monotonic(), final=True)
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def line(self, now=None):
        """The text of one progress line (no control characters)."""
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = (self.current - self.initial) / elapsed
        if self.total:
            done = min(self.current / self.total, 1.0)
            bar = "=" * int(WIDTH * done)
            bar = (bar[:-1] + ">" if 0 < done < 1 and bar else bar).ljust(WIDTH, ".")
            count = f"{self.current}/{self.total} [{bar}] {100 * done:3.0f}%"
        else:
            count = f"{self.current} {self.unit}s"
        parts = [f"{self.desc} {count}" if self.desc else count,
                 f"{_duration(elapsed)}, {_rate(rate, self.unit)}"]
        if self.total and rate > 0 and self.current < self.total:
            parts.append(f"ETA {_duration((self.total - self.current) / rate)}")
        parts += [f"{k} {_number(v)}" for k, v in self.values.items()]
        return " - ".join(parts)

    def _write(self, now, final=False):
        text = self.line(now)
        if self.tty:
            pad = " " * max(self._width - len(text), 0)   # covers a longer previous line
            self._width = len(text)
            text = "\r" + text + pad + ("\n" if final else "")
        else:
            text += "\n"
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):   # a closed or broken stream: progress is optional
            self.enabled = False


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def _duration(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


def _rate(rate, unit):
    if rate >= 1 or rate == 0:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit}"


def _number(value):
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)
