"""The package's layering, read from the import statements (ast), so it stays true.

Layers, top to bottom; an import may only point down (or stay inside its own package):

    main.py, tools/     the entry point and developer tools
    modes/              one module per --mode: the only package importing across the others
                        freely (and run_identity.py, which modes use to check a run)
    training/, export/  the loop and the SavedModels (export never imports training)
    models/, data/      networks (never reading data files) and data sets
    losses.py           plain functions of tensors
    evaluation/, retrieval/   numpy (and FAISS) only: no TensorFlow, no other project package
    config, errors, codes, files, progress, rundir   base modules every layer may use
"""

import ast
import pathlib

import pytest

from udsph_tf.config import config_fields

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "udsph_tf"
BASE = {"config", "errors", "codes", "files", "progress", "rundir"}
NUMPY_BASE = {"codes", "files"}  # numpy only: what evaluation/ and retrieval/ may use
# Which other units a unit may import (a unit: a subpackage, or a top-level module).
ALLOWED = {
    "modes": "*",
    "run_identity": {"training", "export"},  # the checkpoint and export a run record names
    "training": {"models", "data", "evaluation", "losses"},
    "export": {"models", "retrieval"},
    "models": set(),
    "data": set(),
    "losses": set(),
    "evaluation": set(),
    "retrieval": set(),
}
# The one exception, with its reason: the MIRFlickr-730 region grids (a data cache) are
# computed by the EfficientNet-Lite0 backbone and keyed by its weights and preprocessing.
EXCEPTIONS = {("data/regions.py", "models")}
TF_NAMES = ("tensorflow", "keras", "tf_keras")
# The models/ modules that open a file themselves: backbone weights readers (the
# EfficientNet-Lite0 .pth, cnnf's imagenet-vgg-f.mat), never data.
WEIGHT_READERS = {"models/backbones/torch_pickle.py", "models/backbones/cnnf.py"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel, ast.parse(path.read_text(), str(path))


def _unit(rel):
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(tree):
    """Every imported module name, at any depth (function-level imports count too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            if node.module == "udsph_tf":  # `from udsph_tf import export` names a unit
                for alias in node.names:
                    yield f"udsph_tf.{alias.name}"


def _project_units(tree):
    for name in _imports(tree):
        parts = name.split(".")
        if parts[0] == "udsph_tf" and len(parts) > 1:
            yield parts[1]


def test_every_unit_has_a_layer():
    units = {_unit(rel) for rel, _ in _modules()} - {"__init__"}
    assert units <= set(ALLOWED) | BASE, units - set(ALLOWED) - BASE


@pytest.mark.parametrize("rel,tree", list(_modules()), ids=lambda x: str(x))
def test_imports_point_down(rel, tree):
    unit = _unit(rel)
    if unit == "__init__":
        return
    bad = []
    for other in set(_project_units(tree)) - {unit}:
        if unit in BASE:
            ok = other in BASE
        elif unit in ("evaluation", "retrieval"):
            ok = other in NUMPY_BASE
        else:
            allowed = ALLOWED[unit]
            ok = allowed == "*" or other in allowed or other in BASE \
                or (str(rel), other) in EXCEPTIONS
        if not ok:
            bad.append(other)
    assert not bad, f"udsph_tf/{rel} imports {sorted(bad)} (see this module's docstring)"


@pytest.mark.parametrize("unit", ["evaluation", "retrieval", "codes", "files", "rundir",
                                  "config", "errors", "progress"])
def test_numpy_layers_never_import_tensorflow(unit):
    for rel, tree in _modules():
        if _unit(rel) == unit:
            heavy = [n for n in _imports(tree) if n.split(".")[0] in TF_NAMES]
            assert not heavy, f"udsph_tf/{rel} imports {heavy}"


def test_no_package_cycle():
    graph = {}
    for rel, tree in _modules():
        unit = _unit(rel)
        graph.setdefault(unit, set()).update(set(_project_units(tree)) - {unit})
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"
    for node in graph:
        if node not in state:
            visit(node, [node])


def test_models_read_no_data_files():
    """models/ never reads a data set: no udsph_tf.data import, no np.load or open() (a
    backbone's own weights file is read by its loader, which is the network's business)."""
    for rel, tree in _modules():
        if _unit(rel) != "models":
            continue
        assert "data" not in set(_project_units(tree)), rel
        if str(rel) in WEIGHT_READERS:
            continue
        calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"np.load", "open", "scipy.io.loadmat"}, (rel, calls)


def test_main_reaches_the_modes_in_one_call():
    tree = ast.parse((ROOT / "main.py").read_text())
    project = {n for n in _imports(tree) if n.startswith("udsph_tf")}
    assert project <= {"udsph_tf", "udsph_tf.modes", "udsph_tf.errors"}, project


def test_every_flag_is_read_outside_its_definition():
    """Each Config field is read somewhere in the library or main.py (not only in config.py
    and flags/): a flag nothing reads is a promise the code does not keep. Only attribute
    reads (`config.mu`) count: a name in a list of field names (run_identity's BUDGET_FIELDS,
    a flag table) is not a use. Fields read by a Config property count when that property
    is read."""
    names = {f.name for f in config_fields()}
    config_tree = ast.parse((PACKAGE / "config.py").read_text())
    via_property = {}
    for node in ast.walk(config_tree):
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and sub.attr in names:
                    via_property.setdefault(node.name, set()).add(sub.attr)
    read = set()
    paths = [p for p in PACKAGE.rglob("*.py") if p.name != "config.py"] + [ROOT / "main.py"]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            word = node.attr if isinstance(node, ast.Attribute) else None
            if word is not None:
                if word in names:
                    read.add(word)
                read |= via_property.get(word, set())
    assert names <= read, f"flags nothing reads: {sorted(names - read)}"
