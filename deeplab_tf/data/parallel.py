"""What the dataset writer runs its workers with: an ordered, bounded map over a spawn
pool, and a progress bar (TF-free, like the workers)."""
import collections
import multiprocessing
import sys
import time


class OrderedPool:
    """Ordered map over chunks: in-process for one worker, else a bounded spawn pool."""

    def __init__(self, num_workers):
        # "spawn": forking a process that has imported TensorFlow can hang.
        self.pool = (multiprocessing.get_context("spawn").Pool(num_workers)
                     if num_workers > 1 else None)
        self.window = 2 * max(1, num_workers)

    def map(self, fn, jobs):
        if self.pool is None:
            yield from map(fn, jobs)
            return
        pending = collections.deque()
        for job in jobs:
            pending.append(self.pool.apply_async(fn, (job,)))
            if len(pending) >= self.window:  # bounded: a streamed split never piles up
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


class Progress:
    """A one-line progress bar with rate and ETA on stderr (a line every 10 s if not a tty)."""

    def __init__(self, total, desc, enabled=True):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.tty = enabled and sys.stderr.isatty()

    def update(self, n):
        self.done += n
        now = time.monotonic()
        if not self.enabled or (not self.tty and now - self.last < 10 and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0
        bar = "=" * int(30 * self.done / max(self.total, 1))
        start = "\r" if self.tty else ""
        end = "" if self.tty and self.done < self.total else "\n"
        sys.stderr.write(f"{start}{self.desc} [{bar:<30}] {self.done}/{self.total} "
                         f"{rate:.1f} ex/s ETA {int(eta) // 60}:{int(eta) % 60:02d}{end}")
        sys.stderr.flush()
