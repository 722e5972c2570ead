"""The per-dataset flagfiles parse, and the mirflickr730 preset loads the real rows."""

import os
import pathlib

import pytest
from absl import flags as absl_flags

import flags as udsph_flags
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config_from_flagfile(name):
    values = absl_flags.FlagValues()
    udsph_flags.define_flags(values)
    values(["main.py", f"--flagfile={REPO_ROOT / 'flags' / (name + '.cfg')}"])
    return udsph_flags.config_from_flags(values)


@pytest.mark.parametrize("name", ["mirflickr", "nuswide", "coco", "mirflickr730"])
def test_preset_sets_the_dataset(name):
    assert _config_from_flagfile(name).dataset == name


def test_mirflickr730_preset_loads_from_the_repository_root(mirflickr_dir, monkeypatch):
    from udsph_tf.data import load_dataset_from_config, split_from_config
    cfg = _config_from_flagfile("mirflickr730")
    assert cfg.data_dir == "../shared/data/mirflickr25k"
    monkeypatch.chdir(REPO_ROOT)  # the preset's relative path is meant from the repo root
    if not os.path.isdir(cfg.data_dir):
        pytest.skip(f"{cfg.data_dir} is not beside this checkout (data at {mirflickr_dir})")
    data = load_dataset_from_config(cfg)
    assert split_from_config(cfg, data).sizes()["query"] == 100
