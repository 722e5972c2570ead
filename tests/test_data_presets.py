"""The per-dataset flagfiles parse, and the mirflickr730 preset loads the real rows."""

import os
import pathlib

import pytest
import flags as udsph_flags
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config_from_flagfile(name):
    return udsph_flags.config_from_flagfile(REPO_ROOT / "flags" / (name + ".cfg"))


@pytest.mark.parametrize("name", ["mirflickr", "nuswide", "coco", "mirflickr730"])
def test_preset_sets_the_dataset(name):
    assert _config_from_flagfile(name).dataset == name


def test_mirflickr_preset_keeps_the_budget_of_the_readme_scale_figures():
    # README, MIRFlickr scale (bench/mirflickr_scale.py runs this preset): 6 epochs, all run.
    cfg = _config_from_flagfile("mirflickr")
    assert (cfg.epochs, cfg.patience) == (6, 0)


def test_mirflickr730_preset_keeps_the_budget_its_results_were_measured_with():
    # README's MIRFlickr-730 tables: batch 32, 10 epochs of 40-step passes, regions; the
    # results grid reads the same preset (bench/run_results.py --flagfile).
    cfg = _config_from_flagfile("mirflickr730")
    assert (cfg.batch_size, cfg.epochs, cfg.min_pass_steps, cfg.region_grid, cfg.patience) == (
        32, 10, 40, 3, 0)
    import importlib.util
    spec = importlib.util.spec_from_file_location("run_results",
                                                  REPO_ROOT / "bench" / "run_results.py")
    run_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_results)
    assert run_results.config_from_flagfile(REPO_ROOT / "flags" / "mirflickr730.cfg") == cfg
    with pytest.raises(SystemExit, match="no such file"):
        run_results.config_from_flagfile(REPO_ROOT / "flags" / "nope.cfg")


def test_recipe_sweep_runs_mirflickr730_at_the_flagfiles_budget():
    # The README's MIRFlickr-730 grid comes from bench/recipe_sweep.py: every field it sets for
    # the data set (but the data folder, which it finds beside the checkout) is the flagfile's.
    import importlib.util
    spec = importlib.util.spec_from_file_location("recipe_sweep",
                                                  REPO_ROOT / "bench" / "recipe_sweep.py")
    recipe_sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe_sweep)
    cfg = _config_from_flagfile("mirflickr730")
    fields = {k: v for k, v in recipe_sweep.DATASETS["mirflickr730"].items() if k != "data_dir"}
    assert fields == {k: getattr(cfg, k) for k in fields}
    assert cfg.fused_adam  # the speed setting of the 3-minute figure (README, results)


def test_mirflickr730_preset_loads_from_the_repository_root(mirflickr_dir, monkeypatch):
    from udsph_tf.data import load_dataset_from_config, split_from_config
    cfg = _config_from_flagfile("mirflickr730")
    assert cfg.data_dir == "../shared/data/mirflickr25k"
    monkeypatch.chdir(REPO_ROOT)  # the preset's relative path is meant from the repo root
    if not os.path.isdir(cfg.data_dir):
        pytest.skip(f"{cfg.data_dir} is not beside this checkout (data at {mirflickr_dir})")
    data = load_dataset_from_config(cfg)
    assert split_from_config(cfg, data).sizes()["query"] == 100
