"""Dispatch of `main.py --mode=...` to the library functions."""

from udsph_tf.config import Config


def run(config: Config):
    if config.mode == "train":
        from udsph_tf.training import train_and_evaluate
        return train_and_evaluate(config)
    if config.mode == "eval":
        from udsph_tf.training import evaluate
        return evaluate(config)
    if config.mode == "export":
        from udsph_tf.export import export_from_checkpoint
        return export_from_checkpoint(config)
    if config.mode == "search":
        from udsph_tf.retrieval.cli import search
        return search(config)
    if config.mode == "extract":
        from udsph_tf.models.backbones import extract_features
        return extract_features(config)
    raise ValueError(f"unknown --mode={config.mode!r}")
