"""--refit on tiny data: the phase equals the manual `--num_val=0 --epochs=E --patience=0` run,
resumes after an interruption, is what eval/export/search use, and is skipped (with a
message) when there is nothing to refit."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.config import Config
from udsph_tf.data.splits import with_num_val
from udsph_tf.errors import ConfigError
from udsph_tf.modes.evaluate import evaluate
from udsph_tf.modes.export import export_from_checkpoint, restore_encoders
from udsph_tf.modes.search import search
from udsph_tf.modes.train import train_and_evaluate
from udsph_tf.training.checkpointing import selected_checkpoint
from udsph_tf.training.testing import (checkpoint_values, shared_strategy, tiny_config,
                                       tiny_data, tiny_split)
from udsph_tf.training.trainer import Trainer

EPOCHS = 3


def _run(workdir, split=None, **changes):
    changes = {"epochs": EPOCHS, "patience": 0, "deterministic": True, **changes}
    return train_and_evaluate(tiny_config(workdir, **changes), strategy=shared_strategy(1),
                              data=tiny_data(), split=split or tiny_split())


def _weights(directory):
    return checkpoint_values(tf.train.latest_checkpoint(str(directory)))


def _assert_same(want, got):
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(want[k], got[k], err_msg=k)


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    """A finished run without --refit, then the same workdir again with --refit (a budget
    flag: the selection is resumed as it was and the refit phase added)."""
    workdir = tmp_path_factory.mktemp("refit")
    plain = _run(workdir)
    export_from_checkpoint(Config(mode="export", workdir=str(workdir),
                                  export_dir=str(workdir / "export")), data=tiny_data(),
                           split=tiny_split())
    return workdir, plain, _run(workdir, refit=True)


def test_refit_trains_every_training_row_for_the_selected_epochs(refitted):
    workdir, plain, metrics = refitted
    split = tiny_split()
    best = metrics["selection"]["best_epoch"]
    assert best == plain["selection"]["best_epoch"] >= 1
    refit = metrics["refit"]
    assert refit["epochs"] == best
    assert refit["train_rows"] == len(split.train_idx) + len(split.val_idx)
    assert [h["epoch"] for h in refit["history"]] == list(range(1, best + 1))
    assert all("val" not in h for h in refit["history"])
    assert metrics["test"]["model"] == "refit" and plain["test"]["model"] == "selected"
    assert metrics["test"]["checkpoint"].startswith(str(workdir / "refit" / "best"))
    # The selected model's figures are the plain run's: the selection was not retrained.
    assert refit["selected_model_test"] == pytest.approx(
        {k: plain["test"][k] for k in ("map_i2t", "map_t2i")})
    assert json.loads((workdir / "metrics.json").read_text())["refit"]["epochs"] == best
    assert json.loads((workdir / "refit" / "run.json").read_text())["config"]["num_val"] == 0


def test_refit_equals_the_manual_run_on_all_training_rows(refitted, tmp_path):
    workdir, _, metrics = refitted
    best = metrics["selection"]["best_epoch"]
    manual = _run(tmp_path, split=with_num_val(tiny_split(), 0), epochs=best, num_val=0)
    _assert_same(_weights(tmp_path / "best"), _weights(workdir / "refit" / "best"))
    for key in ("map_i2t", "map_t2i"):
        assert metrics["test"][key] == manual["test"][key]
    assert metrics["linear_floor"] == manual["linear_floor"]  # fitted on the same rows


def test_eval_export_and_search_use_the_refit_model(refitted):
    workdir, _, metrics = refitted
    config = tiny_config(workdir, epochs=EPOCHS, patience=0)
    assert selected_checkpoint(str(workdir)).startswith(str(workdir / "refit" / "best"))
    again = evaluate(config, strategy=shared_strategy(1), data=tiny_data(), split=tiny_split())
    assert again["test"]["model"] == "refit"
    for key in ("map_i2t", "map_t2i"):
        assert again["test"][key] == metrics["test"][key]
    assert again["refit"]["selected_model_test"] == metrics["refit"]["selected_model_test"]
    data = tiny_data()
    _, _, path = restore_encoders(config, data.images.shape[1:], data.tags.shape[1],
                                  data.labels.shape[1])
    assert path == selected_checkpoint(str(workdir))


def test_an_export_from_before_the_refit_is_stale(refitted, tmp_path):
    workdir, _, _ = refitted

    def run_search(export_dir):
        config = Config(mode="search", workdir=str(workdir), export_dir=str(export_dir),
                        query_image_row=3, top_k=3)
        return search(config, data=tiny_data(), split=tiny_split(), out=io.StringIO())

    with pytest.raises(ConfigError, match=r"exported from best-\d+ .*, but the run's model is "
                                          r"now refit/best-\d+ .*re-export: python main.py"):
        run_search(workdir / "export")
    # Without an export, search codes the database with the refit's encoders.
    assert run_search(tmp_path).code_source.startswith("checkpoint:refit/best-")


def test_an_interrupted_refit_resumes_and_ends_as_an_uninterrupted_one(
        refitted, tmp_path, monkeypatch, capsys):
    workdir, _, metrics = refitted
    if metrics["refit"]["epochs"] < 2:
        pytest.skip("the selected epoch is 1: no refit epoch to interrupt after")
    real = Trainer.train_epoch

    def stop_in_refit_epoch_2(self, epoch):
        if self.phase_name and epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "train_epoch", stop_in_refit_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, refit=True)
    assert not (tmp_path / "refit" / "best").exists()  # the refit is not the model yet
    assert selected_checkpoint(str(tmp_path)).startswith(str(tmp_path / "best"))
    monkeypatch.setattr(Trainer, "train_epoch", real)
    capsys.readouterr()
    again = _run(tmp_path, refit=True)
    assert "resuming from" in capsys.readouterr().err
    _assert_same(_weights(workdir / "refit" / "best"), _weights(tmp_path / "refit" / "best"))
    assert [h["epoch"] for h in again["refit"]["history"]] == \
        [h["epoch"] for h in metrics["refit"]["history"]]
    for key in ("map_i2t", "map_t2i"):
        assert again["test"][key] == metrics["test"][key]


def test_without_a_validation_split_there_is_nothing_to_refit(tmp_path, capsys):
    metrics = _run(tmp_path, split=with_num_val(tiny_split(), 0), epochs=1, refit=True)
    assert "--refit: nothing to refit (no validation split" in capsys.readouterr().err
    assert "refit" not in metrics and metrics["test"]["model"] == "selected"
    assert not (tmp_path / "refit").exists()
