"""Record and label scans, made once per dataset: cached beside the manifest and reused by
every worker and every restart while the shards are unchanged.

A scan reads every record (record_scan: the framing, or decoding too; bootstrap: the
labels); its result is a pure function of the shards. It is kept in `FOLDER` of the
records' folder (next to manifest.json), one small file per scan kind and set of shards,
named after the shards' key: their names, sizes and modification times. The file holds
the key too, checked on every read. (TF's ram:// reports modification time 0: there a
shard rewritten in place at the same size keeps its stale entry.)

Publishing: a cache file is written whole or not at all (`fileio.write_bytes`), so
workers computing the same scan at once publish the same content twice, harmlessly, and a
reader sees a complete file or none. A file that cannot be read or parsed is a miss. A
folder that cannot be written (a read-only bucket) is logged once and the next folder is
tried (the run's own, see training_input.cache_folders); with none writable the scan is
recomputed at the next start. A cache never fails a run.
"""
import hashlib
import json
import logging

from deeplab_tf import fileio

FOLDER = "scan_cache"
_log = logging.getLogger("deeplab_tf.data")
_unwritable = set()   # folders already reported (one log line each per process)


class Cache:
    """Scans cached in `folders` (a folder or a list): read from the first that holds a
    valid entry, written to the first that accepts it. Shards in the first folder are
    keyed by name, others by their full path."""

    def __init__(self, folders):
        folders = [folders] if isinstance(folders, str) else list(folders)
        self.folders = [str(f) for f in folders if f]

    def key(self, files):
        home = self.folders[0] if self.folders else None
        return [[fileio.basename(f) if fileio.dirname(f) == home else fileio.absolute(f),
                 *fileio.size_and_mtime_ns(f)] for f in files]

    def path(self, folder, kind, key):
        digest = hashlib.sha256(json.dumps([kind, key]).encode()).hexdigest()[:24]
        return fileio.join(folder, FOLDER, f"{kind}-{digest}")

    def get(self, kind, files, compute, dump, load):
        """The cached scan of `files`, else `compute()` published.

        dump(key, value) -> bytes holding both; load(bytes) -> (key, value).
        """
        try:
            key = self.key(files)
        except Exception as e:   # a shard that cannot be stat'ed: the scan names it
            _log.info("scan of %d file(s) not cached: %s", len(files), e)
            return compute()
        for folder in self.folders:
            path = self.path(folder, kind, key)
            try:
                stored_key, value = load(fileio.read_bytes(path))
            except Exception:   # absent, unreadable or not ours: a miss
                continue
            if stored_key == key:
                return value
        value = compute()
        data = dump(key, value)
        for folder in self.folders:
            try:
                fileio.write_bytes(self.path(folder, kind, key), data)
                return value
            except Exception as e:
                if folder not in _unwritable:
                    _unwritable.add(folder)
                    _log.warning("cannot cache the %s scan in %s (%s: %s); %s", kind, folder,
                                 type(e).__name__, e, "trying the next folder"
                                 if folder != self.folders[-1] else "it is made at each start")
        return value


def cache_or_none(folders):
    """A Cache of `folders`, or None when none are given."""
    if folders is None or isinstance(folders, Cache):
        return folders
    cache = Cache(folders)
    return cache if cache.folders else None
