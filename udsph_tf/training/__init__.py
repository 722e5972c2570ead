"""The distributed training loop: `train_and_evaluate(config)` and `evaluate(config)`."""

from udsph_tf.training.trainer import Trainer, TrainingDiverged


def train_and_evaluate(config, strategy=None, data=None, split=None):
    """Train (resuming from config.workdir), select on validation, test once; returns metrics."""
    return Trainer(config, strategy=strategy, data=data, split=split).run()


def evaluate(config, strategy=None, data=None, split=None):
    """Test MAP on the query set with the selected checkpoint in config.workdir, on the run's
    recorded model, data and split (run.json); a missing run creates nothing."""
    from udsph_tf import run_identity
    config = run_identity.evaluation_config(config)
    trainer = Trainer(config, strategy=strategy, data=data, split=split)
    run_identity.check_data(config, trainer.data, trainer.split)
    return trainer.test(history=trainer._read_history())


__all__ = ["Trainer", "TrainingDiverged", "train_and_evaluate", "evaluate"]
