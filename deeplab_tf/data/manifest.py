"""The manifest of a converted dataset (`manifest.json`, written last by writer.py) and the
error every converter and reader raises for a bad input file."""
import dataclasses
import json
from pathlib import Path

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
    output_dir: Path
    metadata: DatasetMetadata
    splits: dict
    data: dict  # the whole manifest.json

    def shard_paths(self, split):
        if split not in self.splits:
            raise DatasetError(f"no split {split!r}; the manifest has {sorted(self.splits)}",
                               self.output_dir / MANIFEST, "unknown_split")
        return [str(self.output_dir / name) for name in self.splits[split]["shards"]]

    def num_examples(self, split):
        return self.splits[split]["num_examples"]


def _read_manifest_json(output_dir):
    path = Path(output_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def load_manifest(output_dir):
    """Reads `manifest.json` of a converted dataset and checks that its shards exist."""
    output_dir = Path(output_dir)
    data = _read_manifest_json(output_dir)
    if data is None:
        raise DatasetError("missing or unreadable manifest; expected the output of a finished "
                           "deeplab-build-data run", output_dir / MANIFEST, "missing_file")
    for split, entry in data["splits"].items():
        for name in entry["shards"]:
            if not (output_dir / name).is_file():
                raise DatasetError(f"shard of split {split!r} listed in the manifest is missing",
                                   output_dir / name, "missing_file")
    return Manifest(output_dir, DatasetMetadata.from_dict(data["metadata"]), data["splits"], data)
