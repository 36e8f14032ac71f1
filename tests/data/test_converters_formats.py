"""Each converter on small inputs in its real format, checked against NumPy."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import tensorflow as tf
from PIL import Image

from deeplab_tf.data import synthetic as synthetic_data
from deeplab_tf.data import tfrecord, writer
from deeplab_tf.data.converters import cityscapes, coco_voc, folder, sbd_trainaug, synthetic
from deeplab_tf.data.metadata import CITYSCAPES, voc_colormap

RNG = np.random.default_rng(0)


def read_records(output_dir, split):
    """name -> (image bytes, label) of a converted split, decoded with the proto and Pillow."""
    manifest = json.loads((Path(output_dir) / "manifest.json").read_text())
    records = {}
    for shard in manifest["splits"][split]["shards"]:
        for raw in tf.data.TFRecordDataset(str(Path(output_dir) / shard)):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            value = lambda key: feature[key].bytes_list.value[0]  # noqa: E731
            label = np.asarray(Image.open(io.BytesIO(value(tfrecord.LABEL_ENCODED))))
            name = value(tfrecord.IMAGE_FILENAME).decode()
            records[name] = (value(tfrecord.IMAGE_ENCODED), label)
    return records


def save_jpeg(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def save_palette_png(path, label):
    png = Image.fromarray(label)
    png.putpalette(voc_colormap().ravel().tolist())
    png.save(path)


def voc_label(height, width):
    label = RNG.integers(0, 21, (height, width)).astype(np.uint8)
    label[0] = 255
    return label


def test_sbd_trainaug_merges_voc_and_sbd(tmp_path):
    voc, sbd = tmp_path / "VOCdevkit" / "VOC2012", tmp_path / "benchmark_RELEASE" / "dataset"
    for d in (voc / "SegmentationClass", voc / "ImageSets/Segmentation", sbd / "cls"):
        d.mkdir(parents=True)
    sizes = {"v1": (20, 24), "v2": (18, 22), "v3": (16, 16), "s1": (21, 25), "s2": (19, 23)}
    images = {n: save_jpeg(voc / "JPEGImages" / f"{n}.jpg", *hw) for n, hw in sizes.items()}
    voc_labels = {n: voc_label(*sizes[n]) for n in ("v1", "v2", "v3")}
    for name, label in voc_labels.items():
        save_palette_png(voc / "SegmentationClass" / f"{name}.png", label)
    (voc / "ImageSets/Segmentation/train.txt").write_text("v1\nv2\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("v3\n")
    sbd_labels = {n: RNG.integers(0, 21, sizes[n]).astype(np.uint8)
                  for n in ("s1", "s2", "v1", "v3")}
    for name, seg in sbd_labels.items():  # SBD's struct: GTcls.Segmentation/Boundaries/...
        boundaries = np.empty((20, 1), dtype=object)
        for k in range(20):
            boundaries[k, 0] = scipy.sparse.csc_matrix(seg == k + 1)
        scipy.io.savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {
            "Segmentation": seg, "Boundaries": boundaries,
            "CategoriesPresent": np.unique(seg[seg > 0]).astype(np.uint8)}})
    (sbd / "train.txt").write_text("s1\nv1\nv3\n")  # v3 is VOC val: excluded
    (sbd / "val.txt").write_text("s2\n")

    manifest = sbd_trainaug.convert(tmp_path / "benchmark_RELEASE", tmp_path / "VOCdevkit",
                                    tmp_path / "out", num_workers=1, progress=False)
    entry = manifest["splits"]["train_aug"]
    assert entry["num_examples"] == 4
    assert entry["label_sources"] == {"voc": 2, "sbd": 2}
    expected = {"s1": sbd_labels["s1"], "s2": sbd_labels["s2"],
                "v1": voc_labels["v1"], "v2": voc_labels["v2"]}  # VOC's label wins for v1
    records = read_records(tmp_path / "out", "train_aug")
    assert sorted(records) == sorted(expected)
    for name, (image, label) in records.items():
        assert image == images[name]
        np.testing.assert_array_equal(label, expected[name])
    counts = np.bincount(np.concatenate([l.ravel() for l in expected.values()]), minlength=256)
    assert entry["class_pixels"] == counts[:21].tolist()
    assert entry["ignore_pixels"] == counts[255]


# ---------------------------------------------------------------------------- COCO

def rle_counts(mask):
    """Uncompressed COCO RLE: run lengths over the column-major pixels, zeros first."""
    flat = np.asfortranarray(mask).ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], change])).tolist()


def box(height, width, y0, y1, x0, x1):
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def polygon(y0, y1, x0, x1):  # pixel (x, y) covers [x, x+1) x [y, y+1)
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_coco_voc_selects_images_and_maps_classes(tmp_path):
    from pycocotools import mask as mask_utils
    h, w = 60, 80
    images = {i: save_jpeg(tmp_path / "train2017" / f"{i:012d}.jpg", h, w) for i in (1, 2, 3, 4)}
    car = mask_utils.encode(np.asfortranarray(box(h, w, 50, 55, 2, 12)))
    anns = [  # (image, category, segmentation, area, iscrowd)
        (1, 1, polygon(5, 45, 5, 45), 1600, 0),                       # person, over 1000 px
        (1, 18, {"counts": rle_counts(box(h, w, 20, 30, 30, 60)), "size": [h, w]}, 300, 0),
        (1, 8, polygon(10, 20, 10, 20), 100, 0),                      # truck: background
        (1, 1, {"counts": rle_counts(box(h, w, 40, 58, 40, 78)), "size": [h, w]}, 684, 1),
        (1, 3, {"counts": car["counts"].decode(), "size": [h, w]}, 50, 0),   # compressed RLE
        (2, 18, polygon(0, 30, 0, 30), 900, 0),                       # VOC, but under 1000
        (3, 8, polygon(0, 50, 0, 50), 2500, 0),                       # big, but not VOC
        (4, 17, {"counts": rle_counts(box(h, w, 0, 50, 0, 50)), "size": [h, w]}, 2500, 1),
    ]
    names = {1: "person", 3: "car", 8: "truck", 17: "cat", 18: "dog"}
    dataset = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w}
                   for i in images],
        "annotations": [{"id": k, "image_id": i, "category_id": c, "segmentation": s,
                         "area": a, "iscrowd": crowd, "bbox": [0, 0, 1, 1]}
                        for k, (i, c, s, a, crowd) in enumerate(anns, 1)],
        "categories": [{"id": c, "name": n, "supercategory": ""} for c, n in names.items()],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances_train2017.json").write_text(json.dumps(dataset))

    manifest = coco_voc.convert(tmp_path, tmp_path / "out", splits=["train2017"],
                                num_workers=1, progress=False)
    entry = manifest["splits"]["train2017"]
    assert entry["num_examples"] == 1
    assert entry["coco_images"] == 4 and entry["dropped_no_voc_region_over_1000px"] == 3
    expected = np.zeros((h, w), np.uint8)
    expected[40:58, 40:78] = 255   # person crowd: ignored where no instance covers it
    expected[5:45, 5:45] = 15      # person; largest first, so smaller objects stay on top
    expected[20:30, 30:60] = 12    # dog
    expected[10:20, 10:20] = 0     # truck: not VOC, background
    expected[50:55, 2:12] = 7      # car
    (image, label), = read_records(tmp_path / "out", "train2017").values()
    assert image == images[1]
    np.testing.assert_array_equal(label, expected)

    dataset["categories"][0]["name"] = "bicycle"  # another id scheme must fail loudly
    (tmp_path / "annotations/instances_train2017.json").write_text(json.dumps(dataset))
    with pytest.raises(writer.DatasetError, match="category id 1 is 'bicycle'"):
        coco_voc.convert(tmp_path, tmp_path / "out2", splits=["train2017"], num_workers=1)


# ---------------------------------------------------------------------------- Cityscapes

# labels.py: trainId of each labelId 0..33 (255 = ignored in evaluation).
TRAIN_ID_OF_LABEL_ID = [255] * 7 + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9,
                                    10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18]


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    assert len(TRAIN_ID_OF_LABEL_ID) == 34
    expected, images = {}, {}
    for split, city, stem in (("train", "aachen", "aachen_000000_000019"),
                              ("train", "bonn", "bonn_000001_000019"),
                              ("val", "lindau", "lindau_000000_000019")):
        image_path = tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        image_path.parent.mkdir(parents=True)
        Image.fromarray(RNG.integers(0, 256, (24, 48, 3), dtype=np.uint8)).save(image_path)
        label_ids = RNG.integers(0, 34, (24, 48)).astype(np.uint8)
        label_path = tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        label_path.parent.mkdir(parents=True)
        Image.fromarray(label_ids).save(label_path)
        images[stem] = image_path.read_bytes()
        expected[stem] = np.array(TRAIN_ID_OF_LABEL_ID, np.uint8)[label_ids]
    manifest = cityscapes.convert(tmp_path, tmp_path / "out", num_workers=1, progress=False)
    assert manifest["metadata"] == CITYSCAPES.to_dict()
    for split, count in (("train", 2), ("val", 1)):
        records = read_records(tmp_path / "out", split)
        assert len(records) == manifest["splits"][split]["num_examples"] == count
        for stem, (image, label) in records.items():
            assert image == images[stem]
            np.testing.assert_array_equal(label, expected[stem])

    Image.fromarray(np.full((24, 48), 40, np.uint8)).save(label_path)  # not a labelId
    with pytest.raises(writer.DatasetError, match=r"label ids \[40\]") as info:
        cityscapes.convert(tmp_path, tmp_path / "out", splits=["val"], num_workers=1)
    assert str(label_path) in str(info.value)


# ---------------------------------------------------------------------------- folder

def test_folder_with_colour_masks(tmp_path):
    colours = {"background": (0, 0, 0), "cat": (255, 0, 0), "dog": (0, 255, 0)}
    (tmp_path / "classes.txt").write_text(
        "# name R G B\n" + "".join(f"{n} {r} {g} {b}\n" for n, (r, g, b) in colours.items()))
    (tmp_path / "masks").mkdir()
    (tmp_path / "splits").mkdir()
    palette = np.array(list(colours.values()) + [(255, 255, 255)], np.uint8)
    expected, images = {}, {}
    for stem, kind in (("a", "rgb"), ("b", "palette"), ("c", "gray")):
        images[stem] = save_jpeg(tmp_path / "images" / f"{stem}.jpg", 16, 20)
        ids = RNG.integers(0, 4, (16, 20)).astype(np.uint8)  # 3 = the ignore colour
        expected[stem] = np.where(ids == 3, 255, ids).astype(np.uint8)
        if kind == "rgb":
            Image.fromarray(palette[ids]).save(tmp_path / "masks" / f"{stem}.png")
        elif kind == "palette":
            save_palette_png(tmp_path / "masks" / f"{stem}.png", expected[stem])
        else:
            Image.fromarray(expected[stem]).save(tmp_path / "masks" / f"{stem}.png")
    (tmp_path / "splits/train.txt").write_text("a\nb\n")
    (tmp_path / "splits/val.txt").write_text("c\n")
    manifest = folder.convert(tmp_path, tmp_path / "out", num_workers=1, progress=False)
    assert manifest["metadata"]["class_names"] == list(colours)
    assert manifest["metadata"]["colors"] == [list(c) for c in colours.values()]
    for split, stems in (("train", "ab"), ("val", "c")):
        records = read_records(tmp_path / "out", split)
        assert sorted(records) == list(stems)
        for stem, (image, label) in records.items():
            assert image == images[stem]
            np.testing.assert_array_equal(label, expected[stem])

    rgb = palette[np.zeros((16, 20), np.uint8)]
    rgb[3, 4] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "masks" / "a.png")
    with pytest.raises(writer.DatasetError, match=r"colour \(1, 2, 3\) is not in classes.txt"
                       ) as info:
        folder.convert(tmp_path, tmp_path / "out", splits=["train"], num_workers=1)
    assert str(tmp_path / "masks" / "a.png") in str(info.value)


def test_folder_hash_split_is_stable_and_complete(tmp_path):
    stems = [f"img{i:03d}" for i in range(200)]
    split = folder.split_stems(tmp_path, ["train", "val"], stems, 0.25)
    assert sorted(split["train"] + split["val"]) == stems
    assert 25 <= len(split["val"]) <= 75
    # Adding files never moves an existing one to the other split.
    more = folder.split_stems(tmp_path, ["train", "val"], stems + ["new1", "new2"], 0.25)
    assert set(split["val"]) <= set(more["val"]) and set(split["train"]) <= set(more["train"])


# ---------------------------------------------------------------------------- TFDS, synthetic

def test_tfds_mock_with_label_map(tmp_path):
    import tensorflow_datasets as tfds
    from deeplab_tf.data.converters import tfds as tfds_converter
    shapes = [(12, 10), (9, 14), (16, 16)]
    data = [(RNG.integers(0, 256, (*s, 3), dtype=np.uint8),
             RNG.integers(1, 4, (*s, 1)).astype(np.uint8)) for s in shapes]

    def as_dataset_fn(self, split, **kwargs):  # same-size image and mask, valid values
        return tf.data.Dataset.from_generator(lambda: ({"image": i, "segmentation_mask": m}
                                                       for i, m in data), output_signature={
            "image": tf.TensorSpec((None, None, 3), tf.uint8),
            "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8)})

    label_map = tfds_converter.parse_label_map("1:1,2:0,3:255")
    with tfds.testing.mock_data(num_examples=len(data), as_dataset_fn=as_dataset_fn):
        manifest = tfds_converter.convert("oxford_iiit_pet", tmp_path / "out", splits=["train"],
                                          label_map=label_map, class_names=["background", "pet"],
                                          num_workers=1, progress=False)
        assert manifest["metadata"]["class_names"] == ["background", "pet"]
        records = read_records(tmp_path / "out", "train")
        assert len(records) == 3
        for (image, mask), (png, label) in zip(data, (records[f"train_{i:06d}"] for i in range(3))):
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
            np.testing.assert_array_equal(label, np.choose(mask[..., 0] - 1, [1, 0, 255]))
        with pytest.raises(writer.DatasetError, match=r"mask values \[3\] are not in the label"):
            tfds_converter.convert("oxford_iiit_pet", tmp_path / "out2", splits=["train"],
                                   label_map={1: 1, 2: 0}, num_workers=1, progress=False)
    with pytest.raises(ValueError, match="not SOURCE:TARGET"):
        tfds_converter.parse_label_map("1:1,2")


def test_synthetic_matches_the_generator(tmp_path):
    manifest = synthetic.convert(tmp_path, num_train=5, num_val=2, seed=3, image_size=(24, 32),
                                 num_workers=1, progress=False)
    assert manifest["metadata"] == synthetic_data.SYNTHETIC_METADATA.to_dict()
    for split, count in (("train", 5), ("val", 2)):
        records = read_records(tmp_path, split)
        generated = list(synthetic_data.iter_split(split, count, 3, (24, 32)))
        assert sorted(records) == [name for name, _, _ in generated]
        for name, image, label in generated:
            png, stored = records[name]
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
            np.testing.assert_array_equal(stored, label)


VOC_SAMPLE_MASKS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" /
                    "voc2012_samples" / "SegmentationClass")


def test_folder_map_ids_keeps_voc_masks_and_refuses_only_binary_ones():
    voc = sorted(VOC_SAMPLE_MASKS.glob("*.png"))
    assert voc
    for path in voc:   # palette masks with 255 void boundaries: unchanged, accepted
        mask = np.asarray(Image.open(path))
        assert 255 in mask
        np.testing.assert_array_equal(folder.map_ids(mask, None, 255, str(path)), mask)
    binary = np.array([[0, 255], [255, 0]], np.uint8)
    with pytest.raises(writer.DatasetError, match="--label_map=255:1") as e:
        folder.map_ids(binary, None, 255, "m.png")
    assert e.value.reason == "binary_mask" and "m.png" in str(e.value)
    np.testing.assert_array_equal(folder.map_ids(binary, {255: 1}, 255), binary // 255)
    np.testing.assert_array_equal(folder.map_ids(binary, {255: 255}, 255), binary)
    camvid = np.array([[0, 11, 2]], np.uint8)
    np.testing.assert_array_equal(folder.map_ids(camvid, {11: 255}, 255), [[0, 255, 2]])
