"""Datasets: TFRecord format, converters, the synthetic set and the tf.data pipeline."""
