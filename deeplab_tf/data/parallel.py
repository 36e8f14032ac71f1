"""What the dataset writer runs its workers with: an ordered, bounded map over a spawn
pool (TF-free, like the workers; the progress bar is deeplab_tf.progress)."""
import collections
import multiprocessing


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
