"""Experiment presets: one module per paper setting, each with get_config()."""
