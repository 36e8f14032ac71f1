"""The manifest of a converted dataset (`manifest.json`, written last by writer.py) and the
error every converter and reader raises for a bad input file.

Readers trust only what a manifest lists: a folder without one is an unfinished (or
failed) conversion, and files it does not list (other runs' hidden temporaries, shards of
a killed run) are not part of the dataset. Paths are strings on any TF filesystem
(local, gs://, ram://), read through `deeplab_tf.fileio`.
"""
import dataclasses
import os

from deeplab_tf import fileio
from deeplab_tf.data.metadata import DatasetMetadata

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class DatasetError(ValueError):
    """An invalid input file; `reason` is the key `--skip_invalid` counts it under."""

    def __init__(self, message, path=None, reason="invalid"):
        super().__init__(f"{path}: {message}" if path else message)
        self.message, self.path, self.reason = message, path, reason

    def __reduce__(self):  # so the error survives the trip back from a worker process
        return type(self), (self.message, self.path, self.reason)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A converted dataset: its metadata and, per split, counts, shards and statistics."""
    output_dir: str
    metadata: DatasetMetadata
    splits: dict
    data: dict  # the whole manifest.json

    def shard_paths(self, split):
        if split not in self.splits:
            raise DatasetError(f"no split {split!r}; the manifest has {sorted(self.splits)}",
                               fileio.join(self.output_dir, MANIFEST), "unknown_split")
        return [fileio.join(self.output_dir, name) for name in self.splits[split]["shards"]]

    def num_examples(self, split):
        return self.splits[split]["num_examples"]


def read_manifest_json(output_dir):
    """The manifest's contents, or None when there is none or it is unreadable JSON."""
    path = fileio.join(output_dir, MANIFEST)
    if not fileio.isfile(path):
        return None
    try:
        return fileio.read_json(path)
    except ValueError:  # JSON or UTF-8 errors: a damaged manifest counts as none
        return None


def load_manifest(output_dir):
    """Reads `manifest.json` of a converted dataset and checks that its shards exist."""
    output_dir = os.fspath(output_dir)
    data = read_manifest_json(output_dir)
    if data is None:
        raise DatasetError("missing or unreadable manifest; expected the output of a finished "
                           "deeplab-build-data run", fileio.join(output_dir, MANIFEST),
                           "missing_file")
    present = set(fileio.listdir(output_dir))  # one listing, not a request per shard
    for split, entry in data["splits"].items():
        for name in entry["shards"]:
            if name not in present:
                raise DatasetError(f"shard of split {split!r} listed in the manifest is missing",
                                   fileio.join(output_dir, name), "missing_file")
    return Manifest(output_dir, DatasetMetadata.from_dict(data["metadata"]), data["splits"], data)


def published(files):
    """(listed, unlisted): of record files, those that a manifest.json in their folder lists,
    and those that it does not: shards of a conversion that never finished or was replaced
    (data/writer.py publishes the manifest last). Files in a folder without a manifest
    (records made by other tools) count as listed."""
    listed, unlisted, by_folder = [], [], {}
    for path in files:
        folder = fileio.dirname(path)
        if folder not in by_folder:
            data = read_manifest_json(folder)
            by_folder[folder] = None if data is None else {
                name for entry in data["splits"].values() for name in entry["shards"]}
        names = by_folder[folder]
        (listed if names is None or fileio.basename(path) in names else unlisted).append(path)
    return listed, unlisted
