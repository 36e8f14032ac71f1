"""The vectorized frame finder of record_scan (the C-speed path for a damaged length
field) against the framing written by tf.io.TFRecordWriter and a bitwise CRC32C."""
import numpy as np
import tensorflow as tf

from deeplab_tf.data import record_scan


def bitwise_masked_crc32c(data):
    """CRC32C bit by bit (no table), masked as TFRecord does."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def write_shard(path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    starts, offset = [], 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(n):
            record = rng.integers(0, 256, int(rng.integers(0, 300)), np.uint8).tobytes()
            writer.write(record)
            starts.append(offset)
            offset += 16 + len(record)
    return starts


def test_crc_matches_bitwise_and_tf_header(tmp_path):
    starts = write_shard(tmp_path / "a.tfrecord")
    data = (tmp_path / "a.tfrecord").read_bytes()
    rows = np.frombuffer(data, np.uint8)[np.add.outer(starts, np.arange(8))]
    got = record_scan.masked_crc32c_of_8(rows)
    want = [bitwise_masked_crc32c(data[s:s + 8]) for s in starts]
    stored = [int.from_bytes(data[s + 8:s + 12], "little") for s in starts]
    assert [int(x) for x in got] == want == stored
    junk = np.random.default_rng(1).integers(0, 256, (50, 8), np.uint8)
    assert [int(x) for x in record_scan.masked_crc32c_of_8(junk)] == [
        bitwise_masked_crc32c(r.tobytes()) for r in junk]


def test_finder_finds_exactly_the_frame_starts_and_the_walk_resumes(tmp_path):
    path = tmp_path / "b.tfrecord"
    starts = write_shard(path)
    data = bytearray(path.read_bytes())
    data[starts[3] + 1] ^= 0x5A            # record 3's length field: its frame is lost
    path.write_bytes(bytes(data))
    found = record_scan.frame_candidates(bytes(data), chunk=97)   # chunk edges crossed
    assert found.tolist() == starts[:3] + starts[4:]
    count, bad, spans = record_scan.walk_shard(str(path))
    assert count == len(starts) and [b.index for b in bad] == [3]
    assert [s[0] for s in spans] == [i for i in range(len(starts)) if i != 3]
    assert [s[1] for s in spans] == [s + 12 for i, s in enumerate(starts) if i != 3]
