"""Corrupt TFRecords, found and named: which shard, which record, why.

A record is framed as [8-byte length][4-byte CRC of the length][data][4-byte CRC of the
data]. tf.data's reader stops a shard at the first record whose CRC fails (DataLossError)
and cannot go past it. `scan` reads every shard once (what counting the records costs):
  - an intact shard is only counted;
  - a damaged one is walked record by record (TF's reader checks each CRC) and continues
    after a bad record: at the next frame its length field gives, or, when that field is
    the damaged part, at the next byte where a valid record starts. Its readable records
    are then read by byte offset (`read_file`; the whole shard is held in memory while
    it is read);
  - with `decode=True` every image and label is also decoded (one pass over the data):
    records with valid CRCs but a broken JPEG/PNG, a label of another size, or missing
    keys are bad too.
Bad records keep their index: the records after them keep theirs, so the pipeline's
example identities (and resumption) do not shift. Nothing is ever written to the shards.
With a `cache` (data/scan_cache.py), a scan is made once per set of shards and reused.
"""
import dataclasses
import json
from typing import List

import numpy as np
import tensorflow as tf
from tensorflow.python.lib.io import tf_record

from deeplab_tf import fileio
from deeplab_tf.data import tfrecord
from deeplab_tf.errors import short_message

SKIP_HINT = ("rebuild the shard with deeplab-build-data, or set "
             "data.skip_corrupt_records=true to train without the bad records")


@dataclasses.dataclass(frozen=True)
class BadRecord:
    file: str
    index: int            # the record's position in its shard, from 0
    offset: int           # its byte offset in the shard (-1: unknown)
    reason: str

    def __str__(self):
        where = f" (byte {self.offset})" if self.offset >= 0 else ""
        return f"{self.file}: record {self.index}{where}: {self.reason}"


class CorruptRecordError(ValueError):
    """Corrupt records; the message names shard, record index and reason for each."""

    def __init__(self, bad, hint=SKIP_HINT):
        shown = "\n  ".join(str(b) for b in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        super().__init__(f"{len(bad)} corrupt TFRecord record(s):\n  {shown}{more}\n{hint}")
        self.bad = list(bad)


@dataclasses.dataclass
class Scan:
    """Records of each file: counts (bad ones included), the bad ones, and for damaged
    shards the spans (index, data offset, length) of their readable records."""
    files: List[str]
    counts: List[int]
    bad: List[BadRecord]
    spans: dict             # file -> [(index, data offset, length)]; damaged shards only

    def valid(self):
        """bool [total records]: False for bad ones (global index = file offset + index)."""
        starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        mask = np.ones(int(sum(self.counts)), bool)
        for b in self.bad:
            mask[starts[self.files.index(b.file)] + b.index] = False
        return mask


def _count(path):
    """(records, None) of an intact shard, or (records before the first bad one, error)."""
    n = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            n += 1
    except tf.errors.DataLossError as e:
        return n, e
    return n, None


def walk_shard(path):
    """(count, bad, spans) of a damaged shard: every frame checked by TF's reader."""
    reader = tf_record.tf_record_random_reader(path)
    data = fileio.read_bytes(path)   # held once; candidate frame starts found in it
    size = len(data)
    offset, index, bad, spans, candidates = 0, 0, [], [], {}   # found once, if needed
    while offset < size:
        try:
            record, end = reader.read(offset)
        except tf.errors.DataLossError as e:
            bad.append(BadRecord(path, index, offset, short_message(e)))
            offset = _next_frame(reader, data, offset, candidates)
        else:
            spans.append((index, offset + 12, len(record)))
            offset = end
        index += 1
    return index, bad, spans


def _length_leads_on(reader, data, offset):
    """Whether the bad record's length field gives the start of a valid record (or the
    end of the file)."""
    following = _following(data, offset)
    return following is not None and (following == len(data) or (
        following < len(data) and _reads(reader, following)))


def _following(data, offset):
    header = data[offset:offset + 8]
    return offset + 16 + int.from_bytes(header, "little") if len(header) == 8 else None


def _next_frame(reader, data, offset, candidates):
    """Where the record after the bad one at `offset` starts: after the frame its length
    field gives if a valid record (or the end of the file) is there, else at the next byte
    from which a valid record reads; the end of the file if none. Only `candidates`
    (frame_candidates, kept in the dict: where a header's CRC holds) can read, so only
    those go to TF's reader."""
    if _length_leads_on(reader, data, offset):
        return _following(data, offset)
    if "offsets" not in candidates:
        candidates["offsets"] = frame_candidates(data)
    candidates = candidates["offsets"]
    for candidate in candidates[np.searchsorted(candidates, offset, side="right"):]:
        if _reads(reader, int(candidate)):
            return int(candidate)
    return len(data)


def _crc32c_table():
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_CRC32C = _crc32c_table()


def masked_crc32c_of_8(headers):
    """The masked CRC32C (TFRecord's) of each row of `headers` (uint8 [n, 8]), vectorized:
    one table lookup per byte for all rows at once."""
    crc = np.full(len(headers), 0xFFFFFFFF, np.uint32)
    for k in range(8):
        crc = _CRC32C[(crc ^ headers[:, k]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return (((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8))


def frame_candidates(data, chunk=1 << 22):
    """int64 offsets where a record can start: the length field fits in the file and the
    4 bytes after it are its masked CRC32C. A superset of the readable frame starts (TF's
    reader confirms each), found at NumPy speed."""
    buf = np.frombuffer(data, np.uint8)
    size, found = len(buf), []
    for start in range(0, max(size - 15, 0), chunk):
        stop = min(start + chunk, size - 15)       # offsets [start, stop): 16 bytes fit
        window = np.lib.stride_tricks.sliding_window_view(buf[start:stop + 11], 12)
        lengths = window[:, :8].copy().view("<u8").ravel()
        offsets = np.arange(start, stop, dtype=np.int64)
        fits = lengths <= (size - 16 - offsets).astype(np.uint64)
        idx = np.flatnonzero(fits)
        if not len(idx):
            continue
        rows = window[idx]
        stored = rows[:, 8:12].copy().view("<u4").ravel()
        hit = masked_crc32c_of_8(rows[:, :8]) == stored
        found.append(offsets[idx[hit]])
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _reads(reader, offset):
    try:
        reader.read(offset)
        return True
    except (tf.errors.DataLossError, IndexError, tf.errors.OutOfRangeError):
        return False


def scan(files, decode=False, cache=None):
    """The Scan of `files` (module docstring); nothing raised for bad records. `cache`: a
    scan_cache.Cache, or folder(s) for one."""
    from deeplab_tf.data import scan_cache
    cache = scan_cache.cache_or_none(cache)
    files = list(files)
    if cache is not None:
        return cache.get("decoded" if decode else "framing", files,
                         lambda: scan(files, decode), _dump, lambda data: _load(data, files))
    counts, bad, spans = [], [], {}
    for path in files:
        n, error = _count(path)
        if error is not None:
            n, shard_bad, spans[path] = walk_shard(path)
            bad += shard_bad
        counts.append(n)
    result = Scan(list(files), counts, bad, spans)
    if decode:
        result.bad = sorted(bad + _undecodable(result),
                            key=lambda b: (files.index(b.file), b.index))
    return result


def require_intact(files, cache=None):
    """Counts of `files`; CorruptRecordError naming every bad record of the damaged shards
    (one read pass, as counting; `cache` as in `scan`)."""
    result = scan(files, cache=cache)
    if result.bad:
        raise CorruptRecordError(result.bad)
    return result.counts


def _dump(key, result):
    """JSON of a Scan; files by position, so a cached scan serves the same shards under
    another spelling of their paths."""
    where = {f: i for i, f in enumerate(result.files)}
    return json.dumps({
        "key": key, "counts": [int(n) for n in result.counts],
        "bad": [[where[b.file], b.index, b.offset, b.reason] for b in result.bad],
        "spans": {str(where[f]): [[int(x) for x in s] for s in spans]
                  for f, spans in result.spans.items()}}).encode()


def _load(data, files):
    d = json.loads(data)
    if len(d["counts"]) != len(files):
        raise ValueError("a scan of other files")
    bad = [BadRecord(files[i], index, offset, reason) for i, index, offset, reason in d["bad"]]
    spans = {files[int(i)]: [tuple(s) for s in rows] for i, rows in d["spans"].items()}
    return d["key"], Scan(list(files), d["counts"], bad, spans)


# ----------------------------------------------------------------------------- reading

def read_fn(record_scan):
    """fn(file index tensor) -> dataset of (global index, serialized record) of that file:
    the readable records of a damaged shard included, the bad ones left out."""
    files = record_scan.files
    counts = np.array(record_scan.counts, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first_bad = counts.copy()   # records readable by tf.data before the first bad one
    for b in record_scan.bad:
        if b.file in record_scan.spans:
            i = files.index(b.file)
            first_bad[i] = min(first_bad[i], b.index)
    rows = [(i, starts[i] + index, offset, length) for i, f in enumerate(files)
            for index, offset, length in record_scan.spans.get(f, []) if index > first_bad[i]]
    files_t, starts_t = tf.constant(files), tf.constant(starts)
    readable_t = tf.constant(first_bad)
    table = [tf.constant(np.array([r[k] for r in rows], np.int64).reshape(-1))
             for k in range(4)]

    def read_file(i):
        head = tf.data.TFRecordDataset(files_t[i]).take(readable_t[i]).enumerate(starts_t[i])
        if not rows:
            return head
        mine = tf.equal(table[0], tf.cast(i, tf.int64))
        g, offset, length = (tf.boolean_mask(t, mine) for t in table[1:])

        def tail(path):
            content = tf.io.read_file(path)   # once per file and epoch
            return tf.data.Dataset.from_tensor_slices((g, offset, length)).map(
                lambda g, o, n: (g, tf.strings.substr(content, o, n)))
        rest = tf.data.Dataset.from_tensors(files_t[i]).filter(
            lambda _: tf.size(g) > 0).flat_map(tail)
        return head.concatenate(rest)
    return read_file


def _check(record):
    features = tfrecord.parse_example(record)
    image = tfrecord.decode_image(features[tfrecord.IMAGE_ENCODED])
    label = tfrecord.decode_label(features[tfrecord.LABEL_ENCODED])
    tf.debugging.assert_equal(tf.shape(label)[:2], tf.shape(image)[:2],
                              message="label and image sizes differ")
    return tf.shape(image)


def _undecodable(record_scan) -> List[BadRecord]:
    """Records with valid CRCs whose example, image or label cannot be decoded."""
    read = read_fn(record_scan)
    all_records = tf.data.Dataset.range(len(record_scan.files)).flat_map(read)
    good = all_records.map(lambda g, r: (g, _check(r)), num_parallel_calls=tf.data.AUTOTUNE)
    decoded = {int(g) for g, _ in good.ignore_errors().as_numpy_iterator()}
    present = {int(g) for g, _ in all_records.map(lambda g, r: (g, 0)).as_numpy_iterator()}
    starts = np.concatenate([[0], np.cumsum(record_scan.counts)[:-1]]).astype(np.int64)
    bad = []
    for g, record in all_records.filter(
            lambda g, r: tf.reduce_any(tf.equal(g, tf.constant(
                sorted(present - decoded) or [-1], tf.int64)))):
        file_i = int(np.searchsorted(starts, int(g), side="right") - 1)
        try:
            _check(record)
            reason = "cannot be decoded"
        except (tf.errors.InvalidArgumentError, tf.errors.OpError) as e:
            reason = f"cannot be decoded: {short_message(e)}"
        bad.append(BadRecord(record_scan.files[file_i], int(g) - int(starts[file_i]), -1,
                             reason))
    return bad


def find_bad_records(files) -> List[BadRecord]:
    """Every bad record of `files`, framing and decoding (to explain a failed run)."""
    return scan(list(files), decode=True).bad

