"""The training loop end to end on tiny generated data: outputs, selection, resume, NaN stop."""

import glob
import json
import os

import pytest
import tensorflow as tf

from udsph_tf.modes.evaluate import evaluate
from udsph_tf.modes.train import make_trainer, train_and_evaluate
from udsph_tf.progress import Progress
from udsph_tf.training.trainer import TrainingDiverged
from udsph_tf.training.summaries import Summaries
from udsph_tf.training.testing import (assert_resume_equals_one_session, shared_strategy,
                                       tiny_config, tiny_data, tiny_split)


def _run(workdir, **changes):
    config = tiny_config(workdir, **changes)
    return train_and_evaluate(config, strategy=shared_strategy(1), data=tiny_data(),
                              split=tiny_split())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    return workdir, _run(workdir, epochs=3)


def test_run_writes_metrics_plots_checkpoints_and_summaries(finished_run):
    workdir, metrics = finished_run
    with open(workdir / "metrics.json") as f:
        on_disk = json.load(f)
    t = on_disk["test"]
    assert t["split"] == "query" and t["n_queries"] == 16
    assert on_disk["selection"]["split"] == "val" and 1 <= on_disk["selection"]["best_epoch"] <= 3
    assert on_disk["split_seed"] == 0 and on_disk["bits"] == 8
    for key in ("map_i2t", "map_t2i", "map_i2t_expected", "map_t2i_expected"):
        assert 0.0 <= t[key] <= 1.0
        assert t[key] == pytest.approx(metrics["test"][key])
    assert set(t["distinct_codes"]) == {"image_query", "text_query", "image_database",
                                        "text_database"}
    assert "label_base_rate" in on_disk["chance"]
    assert len(on_disk["history"]) == 3 and all("val" in h for h in on_disk["history"])
    for name in ("curves_i2t_pr.png", "curves_i2t_precision_at_n.png",
                 "curves_t2i_pr.png", "curves_t2i_precision_at_n.png"):
        assert (workdir / name).stat().st_size > 1000, name
    assert tf.train.latest_checkpoint(str(workdir / "ckpt"))
    assert tf.train.latest_checkpoint(str(workdir / "best"))
    train_events = glob.glob(str(workdir / "train" / "events.out.tfevents.*"))
    eval_events = glob.glob(str(workdir / "eval" / "events.out.tfevents.*"))
    assert train_events and eval_events
    tags = set()
    plugins = set()
    for path in train_events + eval_events:
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                tags.add(v.tag)
                plugins.add(v.metadata.plugin_data.plugin_name)
    for tag in ("loss/labnet/total", "loss/imgnet/adversarial", "loss/txtnet/attention",
                "loss/disc/total", "learning_rate/imgnet", "val/map_i2t", "test/map_t2i",
                "pr_curve/i2t", "codes/image_bit_balance"):
        assert tag in tags, tag
    assert {"pr_curves", "hparams", "scalars", "histograms"} <= plugins


def test_eval_mode_reproduces_the_test_figures(finished_run):
    workdir, metrics = finished_run
    again = evaluate(tiny_config(workdir, epochs=3), strategy=shared_strategy(1),
                     data=tiny_data(), split=tiny_split())
    assert again["test"]["map_i2t"] == pytest.approx(metrics["test"]["map_i2t"])
    assert again["test"]["map_t2i"] == pytest.approx(metrics["test"]["map_t2i"])
    assert again["test"]["selected_epoch"] == metrics["test"]["selected_epoch"]


def test_eval_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no selected checkpoint"):
        evaluate(tiny_config(tmp_path), strategy=shared_strategy(1), data=tiny_data(),
                 split=tiny_split())


@pytest.mark.slow
def test_resume_in_two_sessions_equals_one_session(tmp_path):
    """Train 1 epoch, stop, continue to 2 in a new Trainer: same weights as 2 epochs at once.
    With tag dropout on, so the random tag masks' RNG state is resumed too."""
    assert_resume_equals_one_session(_run, tmp_path, tag_dropout=0.4)


def test_patience_stops_a_run_that_no_longer_improves_and_a_resume_stays_stopped(tmp_path,
                                                                                  capsys):
    """Rates at 0: every epoch scores what epoch 1 scored, so --patience=2 stops after epoch 3
    of 6, and the same command again trains nothing more."""
    frozen = dict(epochs=6, patience=2, lr_lab=0.0, lr_img=0.0, lr_txt=0.0, lr_disc=0.0)
    metrics = _run(tmp_path, **frozen)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["selection"]["best_epoch"] == 1
    assert metrics["selection"]["stopped_early_at"] == 3
    assert "stopping after epoch 3 of 6" in capsys.readouterr().err
    again = _run(tmp_path, **frozen)
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3]
    assert again["test"] == metrics["test"]


def test_patience_counts_evaluations_not_epochs():
    from udsph_tf.config import Config
    from udsph_tf.training.schedule import patience_spent, stopped_early
    c = Config(patience=2, eval_every=2, epochs=20)
    assert not patience_spent(c, epochs_done=7, best_epoch=4)   # one evaluation (6) since
    assert patience_spent(c, epochs_done=8, best_epoch=4)       # two (6, 8)
    assert not patience_spent(Config(patience=0), epochs_done=50, best_epoch=1)
    assert not patience_spent(c, epochs_done=9, best_epoch=-1)  # no validation split
    history = [{"epoch": e} for e in range(1, 9)]
    assert stopped_early(c, history, best_epoch=4) == 8
    assert stopped_early(c, history, best_epoch=8) is None
    assert stopped_early(Config(patience=2, epochs=8), history, best_epoch=4) is None  # ran all


def _checkpoint_only(workdir, **changes):
    """A saved, untrained run state (cheaper than training an epoch to get a checkpoint)."""
    t = make_trainer(tiny_config(workdir, **changes), strategy=shared_strategy(1), data=tiny_data(),
                split=tiny_split(seed=changes.get("split_seed", 0)))
    t.task.fill_buffers()
    t.ckpt.save_latest()


def test_nan_loss_stops_with_network_and_step_and_keeps_checkpoint(tmp_path):
    _checkpoint_only(tmp_path)
    before = tf.train.latest_checkpoint(str(tmp_path / "ckpt"))
    with pytest.raises(TrainingDiverged, match=r"imgnet loss is not finite at step \d+") as err:
        # An absurd rate blows ImgNet up in its first epoch; LabNet/discriminators stay sane.
        _run(tmp_path, epochs=1, lr_img=1e30)
    assert before in str(err.value)
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")) == before


def test_mismatched_split_seed_refuses_to_resume(tmp_path):
    _checkpoint_only(tmp_path)
    config = tiny_config(tmp_path, epochs=2)
    with pytest.raises(ValueError, match="split seed"):
        train_and_evaluate(config, strategy=shared_strategy(1), data=tiny_data(),
                           split=tiny_split(seed=5))


def test_summaries_reject_bad_pr_counts_and_non_chief_writes_nothing(tmp_path):
    s = Summaries(str(tmp_path / "chief"))
    with pytest.raises(ValueError, match="pr_curve"):
        s.pr_curve("eval", "x", [1, 2], [1], [1, 2], [1, 2], step=0)
    with pytest.raises(ValueError, match="unknown summary split"):
        s.scalars("test", {"a": 1.0}, 0)
    quiet = Summaries(str(tmp_path / "worker"), enabled=False)
    quiet.scalars("train", {"a": 1.0}, 0)
    assert not os.path.exists(tmp_path / "worker")


def test_progress_bar_shows_count_and_eta():
    import io
    stream = io.StringIO()
    bar = Progress(4, "epoch 1/2", stream=stream, min_interval=0)
    bar.update(1, loss=0.5)
    bar.update(1)
    text = stream.getvalue()
    assert "1/4" in text and "2/4" in text and "loss=0.5" in text and "<" in text
    bar.close()
