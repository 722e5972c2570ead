"""bench/run_wall.py's pieces: variants, the step seconds of a run and its refit, the table."""

import importlib.util
import json
import pathlib

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "run_wall", pathlib.Path(__file__).resolve().parents[1] / "bench" / "run_wall.py")
run_wall = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(run_wall)


def test_a_variant_is_a_name_main_py_flags_and_optionally_a_checkout(tmp_path):
    assert run_wall.parse_variant("fused:--fused_adam --bits=16") == (
        "fused", ["--fused_adam", "--bits=16"], None)
    assert run_wall.parse_variant("base:") == ("base", [], None)
    with pytest.raises(SystemExit, match=r"NAME\[@CHECKOUT\]:FLAGS"):
        run_wall.parse_variant("--fused_adam")
    with pytest.raises(SystemExit, match="no main.py in"):
        run_wall.parse_variant(f"before@{tmp_path}:")
    (tmp_path / "main.py").write_text("")
    assert run_wall.parse_variant(f"before@{tmp_path}:--bits=16") == (
        "before", ["--bits=16"], str(tmp_path))


def test_step_seconds_add_the_selection_and_the_refit(tmp_path):
    epoch = {"epoch": 1, "step_seconds": {"labnet": 1.0, "imgnet": 2.5}}
    (tmp_path / "history.json").write_text(json.dumps([epoch, epoch]))
    assert run_wall.step_seconds(tmp_path) == 7.0
    (tmp_path / "refit").mkdir()
    (tmp_path / "refit" / "history.json").write_text(json.dumps([epoch]))
    assert run_wall.step_seconds(tmp_path) == 10.5
    (tmp_path / "refit" / "history.json").write_text(json.dumps([{**epoch,
                                                                  "input_seconds": 0.25}]))
    assert run_wall.step_seconds(tmp_path) == 10.75  # the epoch's input set-up counts too


def test_rows_are_medians_with_the_wall_ratio_to_the_baseline():
    def run(wall):
        return {"wall": wall, "cpu": 1.0, "rss_mb": 2.0, "steps": 3.0, "i2t": 0.5, "t2i": 0.4}
    results = {"base": [run(100.0), run(120.0), run(110.0)], "fast": [run(55.0), run(99.0)]}
    rows = run_wall.summary_rows(results, "base")
    assert [(name, n) for name, n, _, _ in rows] == [("base", 3), ("fast", 2)]
    assert rows[0][2]["wall"] == 110.0 and rows[0][3] == 1.0
    assert rows[1][2]["wall"] == 77.0 and rows[1][3] == pytest.approx(0.7)
