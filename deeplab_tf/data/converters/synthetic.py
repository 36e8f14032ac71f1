"""The generated dataset of `deeplab_tf.data.synthetic`, written like a real one.

No files to read: each worker regenerates its examples from (seed, split, index), so the
records are the same for any number of workers. Images are PNG-encoded (lossless).
"""
from deeplab_tf.data import synthetic, writer

DEFAULT_SPLITS = ("train", "val")
DEFAULT_NUM_SHARDS = 4


def load_example(example_item):
    split, index, seed, image_size = example_item
    image, label = synthetic.generate_example(index, seed, image_size, split=split)
    return writer.Example(f"{split}_{index:06d}", writer.encode_png(image), "png",
                          image.shape[0], image.shape[1], label)


def convert(output_dir, splits=DEFAULT_SPLITS, num_train=None, num_val=None, seed=0,
            image_size=synthetic.DEFAULT_IMAGE_SIZE, num_shards=DEFAULT_NUM_SHARDS,
            **write_options):
    """Writes `splits` of the synthetic dataset.

    Args:
      num_train, num_val: images in train and val (default synthetic.DEFAULT_SPLIT_SIZES;
        other splits always use that default, or 100 if it has none).
      seed: dataset seed; image_size: (height, width).
    """
    sizes = {**synthetic.DEFAULT_SPLIT_SIZES}
    sizes.update({k: v for k, v in (("train", num_train), ("val", num_val)) if v is not None})
    image_size = tuple(int(v) for v in image_size)
    items = {split: [(split, i, seed, image_size) for i in range(sizes.get(split, 100))]
             for split in splits}
    return writer.write_dataset(
        output_dir, items, load_example, synthetic.SYNTHETIC_METADATA, num_shards=num_shards,
        converter={"name": "synthetic", "args": {"splits": list(splits), "sizes": sizes,
                                                 "seed": seed, "image_size": list(image_size)}},
        **write_options)
