"""Files as the fault tests compare them, before and after a fault."""
import os


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def changed(before, directory):
    """How many of the files in `before` (a snapshot) are now missing or different."""
    after = snapshot(directory)
    return sum(after.get(k) != v for k, v in before.items())


def assert_refused(run, *words):
    """A command that refused its input as users should see it: exit status 1, no
    traceback, each of `words` in its error output."""
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for word in words:
        assert word in run.stderr, (word, run.stderr[-2000:])
