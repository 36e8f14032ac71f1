"""Reproduces Figure 4 of DeepLabv3 (Chen et al. 2017, Sec. 3.3).

For every atrous rate 1..max_rate, counts how many of the 9 taps of a 3x3
dilated filter land inside a size x size feature map (SAME zero padding) at
each output position, and reports the fraction of positions with exactly 1, 4
and 9 valid taps. At large rates the 3x3 filter degenerates into a 1x1 one,
which motivates ASPP's image-level features.

Writes <output_dir>/fig4.png (the plot) and <output_dir>/fig4.csv
(columns rate,one,four,nine) and prints a short table.

Usage:
  deeplab-fig4 --output_dir=/tmp/fig4 [--size=65] [--max_rate=64]
  python -m deeplab_tf.tools.fig4 --output_dir=/tmp/fig4
"""
from absl import app, flags

from deeplab_tf import fileio

from deeplab_tf.analysis import fig4

from deeplab_tf.tools import run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS

shared.define_output_dir("Folder to write fig4.png and fig4.csv into (created if missing).",
                        required=True)
flags.DEFINE_integer(
    "size", 65, "Side of the square feature map, in pixels (the paper uses 65; must be >= 3)."
)
flags.DEFINE_integer(
    "max_rate", 64, "Largest atrous rate; rates 1..max_rate are evaluated (must be >= 1)."
)
flags.register_validator("size", lambda v: v is not None and v >= 3, message="--size must be >= 3")
flags.register_validator(
    "max_rate", lambda v: v is not None and v >= 1, message="--max_rate must be >= 1"
)

# The rates the paper's ASPP uses (6/12/18 at output_stride 16, doubled at 8)
# plus both ends of the figure's x axis.
_TABLE_RATES = (1, 6, 12, 18, 24, 36, 64)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected positional arguments: {argv[1:]}")
    fileio.makedirs(FLAGS.output_dir)
    result = fig4.valid_weight_fractions(range(1, FLAGS.max_rate + 1), size=FLAGS.size)
    png = fileio.join(FLAGS.output_dir, "fig4.png")
    csv = fileio.join(FLAGS.output_dir, "fig4.csv")
    fig4.write_csv(csv, result)
    fig4.plot(png, result)
    print(f"wrote {png}")
    print(f"wrote {csv}")
    print(f"{'rate':>5} {'1 valid':>9} {'4 valid':>9} {'9 valid':>9}")
    for i, r in enumerate(result.rate):
        if int(r) in _TABLE_RATES:
            print(f"{int(r):>5} {result.one[i]:9.4f} {result.four[i]:9.4f} {result.nine[i]:9.4f}")


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
