"""Dataset metadata: class names, colour map, number of classes, ignore value.

This is the one source of truth about a dataset's labels: converters write it into
`manifest.json`, training copies it into the model_dir, export into the SavedModel.
"""
import dataclasses
import json
from typing import Optional, Tuple

import numpy as np

IGNORE_LABEL = 255

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def voc_colormap(n=256):
    """The standard PASCAL VOC colour map (bit-interleaved), as an (n, 3) uint8 array."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """What a model needs to know about a dataset's labels.

    Attributes:
      name: dataset name, e.g. "voc2012".
      class_names: one name per class id 0..num_classes-1.
      colors: one RGB triple per class (for coloured masks), or None for the VOC colour map.
      ignore_label: label value excluded from loss and metrics (255 in every dataset here).
    """
    name: str
    class_names: Tuple[str, ...]
    colors: Optional[Tuple[Tuple[int, int, int], ...]] = None
    ignore_label: int = IGNORE_LABEL

    @property
    def num_classes(self):
        return len(self.class_names)

    def colormap(self):
        """(256, 3) uint8 colours indexed by label value; the ignore value is white."""
        cmap = voc_colormap(256)
        if self.colors is not None:
            cmap[: len(self.colors)] = np.asarray(self.colors, dtype=np.uint8)
        cmap[self.ignore_label] = (255, 255, 255)
        return cmap

    def to_dict(self):
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "colors": [list(c) for c in self.colors] if self.colors is not None else None,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
        }

    @classmethod
    def from_dict(cls, d):
        colors = d.get("colors")
        return cls(
            name=d["name"],
            class_names=tuple(d["class_names"]),
            colors=tuple(tuple(int(v) for v in c) for c in colors) if colors else None,
            ignore_label=int(d.get("ignore_label", IGNORE_LABEL)),
        )

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)


VOC = DatasetMetadata("voc2012", VOC_CLASSES)
CITYSCAPES = DatasetMetadata("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_COLORS)
