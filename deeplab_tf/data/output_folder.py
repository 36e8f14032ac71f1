"""What a conversion may write into its output folder, and under which names.

The rule (the same as publish.check_replaceable's for folders): a conversion replaces only
what it wrote itself. Before any work, `check` refuses an output folder that holds
  - files that are not part of a converted dataset (the user's images, notes, ...);
  - record shards that no manifest.json lists while the folder has no manifest: another
    tool's dataset (e.g. research/deeplab's build_voc2012_data output), or the user's own;
  - a manifest of another dataset (other classes, colours or ignore value): adding
    splits to it would mix two datasets.
A folder with this dataset's manifest may get new or rewritten splits. Shards the manifest
does not list there (left by a conversion that was killed before its manifest) are left
alone and reported: readers never take them (pipeline.list_files).

Names: a new shard never replaces an existing file. It takes the usual name
`{split}-{i:05d}-of-{n:05d}.tfrecord` when that is free, else one with this run's tag
(`...-of-{n:05d}-{tag}.tfrecord`), so the previous dataset stays whole and readable until
the new manifest is written; only then are the replaced shards (those the previous
manifest listed for the rewritten splits) removed (writer.py).
"""
import logging
import re

from deeplab_tf import fileio, lease
from deeplab_tf.data.manifest import MANIFEST, DatasetError

log = logging.getLogger("deeplab_tf.data.writer")
SHARD = re.compile(r"(.+)-\d{5}-of-\d{5}(-[0-9a-f]{8})?\.tfrecord")
TEMPORARY = re.compile(r"\..+\.tmp-.+")   # fileio.temporary_name's (hidden) names
SCAN_CACHE = "scan_cache"                 # data/scan_cache.py's folder beside the manifest


def shard_split(name):
    """The split of a shard file name, or None (a glob would confuse "val" and "val-hard")."""
    match = SHARD.fullmatch(name)
    return match and match[1]


def listed_shards(manifest):
    return {name for entry in (manifest or {}).get("splits", {}).values()
            for name in entry["shards"]}


def check(output_dir, metadata, previous):
    """Raises DatasetError (reason "output_dir") naming what makes `output_dir` not this
    conversion's to write (module docstring); `previous`: its manifest.json, or None.
    Warns about unlisted shards and other runs' temporaries, which are left alone."""
    if not fileio.exists(output_dir):
        return
    names = fileio.listdir(output_dir)
    listed = listed_shards(previous)
    if previous is None and fileio.exists(fileio.join(output_dir, MANIFEST)):
        raise DatasetError("unreadable manifest.json: the folder holds a dataset this "
                           "command cannot identify; choose another --output_dir",
                           fileio.join(output_dir, MANIFEST), "output_dir")
    foreign = [n for n in names if n not in listed and n not in (MANIFEST, SCAN_CACHE, lease.NAME)
               and not TEMPORARY.fullmatch(n) and not SHARD.fullmatch(n)]
    stray = [n for n in names if SHARD.fullmatch(n) and n not in listed]
    if foreign or (stray and previous is None):
        shown = (foreign or stray)[:5]
        what = ("files that are not part of a converted dataset" if foreign else
                "record shards that no manifest.json lists (another tool's dataset?)")
        raise DatasetError(
            f"holds {what}: {', '.join(shown)}{' ...' if len(foreign or stray) > 5 else ''}. "
            f"A conversion writes only into an empty folder or one holding a dataset it "
            f"wrote (manifest.json); choose another --output_dir", output_dir, "output_dir")
    if previous is not None and previous.get("metadata") != metadata.to_dict():
        old = previous.get("metadata", {})
        raise DatasetError(
            f"holds another dataset ({old.get('num_classes')} classes: "
            f"{', '.join(old.get('class_names', [])[:6])}...; converter "
            f"{(previous.get('converter') or {}).get('name')}), not the "
            f"{metadata.num_classes} classes being written: adding splits would mix two "
            f"datasets; choose another --output_dir", output_dir, "output_dir")
    if stray:
        log.warning("%d shard(s) in %s that its manifest does not list (a conversion "
                    "killed before its manifest?), left alone and never read: %s",
                    len(stray), output_dir, ", ".join(stray[:5]) + (" ..." if len(stray) > 5
                                                                     else ""))
    others = [n for n in names if TEMPORARY.fullmatch(n)]
    if others:
        log.warning("%d temporary file(s) of another conversion in %s, left alone (it may "
                    "still be writing; if none is, delete them): %s", len(others), output_dir,
                    ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))


def shard_names(output_dir, split, num_shards, tag, taken):
    """The split's shard names: the usual ones, or all tagged with `tag` if any usual one
    is taken (by a file in the folder or in `taken`, names this run already chose)."""
    plain = [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    present = set(fileio.listdir(output_dir)) | set(taken)
    if not present.intersection(plain):
        return plain
    return [f"{split}-{i:05d}-of-{num_shards:05d}-{tag}.tfrecord" for i in range(num_shards)]
