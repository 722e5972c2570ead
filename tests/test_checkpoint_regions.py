"""Checkpoints of runs with regions: a resume equals one session; a checkpoint from before
ImgNet/TxtNet owned the attention's projections is refused, naming the cause."""

import pytest
import tensorflow as tf

from udsph_tf.errors import UserError
from udsph_tf.models import CrossModalAttention, build_models
from udsph_tf.modes.export import restore_encoders
from udsph_tf.modes.train import make_trainer, train_and_evaluate
from udsph_tf.training.checkpointing import CheckpointVersionError
from udsph_tf.training.testing import (assert_resume_equals_one_session, shared_strategy,
                                       tiny_config,
                                       tiny_region_data, tiny_split)

GRID = 2


def _run(workdir, **changes):
    config = tiny_config(workdir, region_grid=GRID, **changes)
    return train_and_evaluate(config, strategy=shared_strategy(1),
                              data=tiny_region_data(grid=GRID), split=tiny_split())


@pytest.mark.slow
def test_region_run_resumed_in_two_sessions_equals_one_session(tmp_path):
    _, a = assert_resume_equals_one_session(_run, tmp_path)
    assert any("model_imgnet/region_proj" in k for k in a)  # the projections are saved
    assert any("model_txtnet/token_proj" in k for k in a)


def _old_layout_models(config, data):
    """The networks as they were before issue 11: ImgNet and TxtNet without projections (what
    --attention=none builds), and an attention layer holding its own."""
    models = build_models(tiny_config(config.workdir, attention="none"),
                          data.images.shape[1:], data.tag_dim, data.num_labels)
    regions = models["imgnet"](data.images[:2])["regions"]
    tokens = models["txtnet"](data.tags[:2])
    attention = CrossModalAttention(regions.shape[-1], tokens["tokens"].shape[-1],
                                    dim=config.attention_dim, name="attention")
    attention(regions, tokens["tokens"], tokens["token_mask"])
    return dict(models, attention=attention)


def test_old_best_checkpoint_is_refused_naming_the_projections(tmp_path):
    data, config = tiny_region_data(grid=GRID), tiny_config(tmp_path, region_grid=GRID)
    old = _old_layout_models(config, data)
    tf.train.Checkpoint(**{f"model_{k}": old[k] for k in ("imgnet", "txtnet", "attention")}
                        ).write(str(tmp_path / "best" / "best-1"))
    with open(tmp_path / "best" / "checkpoint", "w") as f:  # the index best/ keeps
        f.write('model_checkpoint_path: "best-1"\n')
    with pytest.raises(CheckpointVersionError) as err:
        restore_encoders(config, data.images.shape[1:], data.tag_dim, data.num_labels)
    message = str(err.value)
    assert isinstance(err.value, UserError)  # main.py: one line, exit status 2
    assert "imgnet.region_proj and txtnet.token_proj" in message
    assert "before ImgNet and TxtNet owned the attention's region and word projections" \
        in message and "new --workdir" in message


def test_old_run_checkpoint_is_refused_on_resume(tmp_path):
    data, split = tiny_region_data(grid=GRID), tiny_split()
    # A saved, untrained run state of the old layout: networks without projections (+ Adam).
    old = make_trainer(tiny_config(tmp_path, region_grid=GRID, attention="none"),
                       strategy=shared_strategy(1), data=data, split=split)
    old.task.fill_buffers()
    old.ckpt.save_latest()
    new = make_trainer(tiny_config(tmp_path, region_grid=GRID), strategy=shared_strategy(1),
                       data=data, split=split)
    with pytest.raises(CheckpointVersionError, match=r"ckpt-0: holds no weights for "
                       r"imgnet.region_proj and txtnet.token_proj: it was written by a run "
                       r"without them"):
        new.ckpt.restore_latest()
