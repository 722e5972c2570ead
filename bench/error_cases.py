"""Bad input through `python main.py`, as a user types it: is every case refused with one line?

    python bench/error_cases.py [--only NAME ...] [--timeout 600] [--keep]

Each case gets a fresh temporary folder holding tiny files written with numpy (a valid 40-row
custom data set, then one thing broken), runs main.py in a subprocess and records the exit
status, whether stderr's last line starts with `error: `, whether a traceback appears, and
whether every file that existed before the run (the inputs, a `metrics.json` placed in the
workdir of the workdir cases) has the same sha1 after it. Prints a markdown table and
`N cases: M refused cleanly (exit 2, one line, no traceback), K files unchanged`. A case not
refused cleanly shows where its exception was raised (the last frame of the traceback).
Every run has `--epochs=1 --batch_size=8` and small widths, so a case wrongly accepted ends
in about a minute instead of training for long.
"""

import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
N = 40  # rows of the base data set: 4 query, 20 train (custom: 10% / 50%)
# Cheap if a case is wrongly accepted and trains.
FAST = ["--epochs=1", "--batch_size=8", "--bits=16", "--feature_dim=32", "--labnet_hidden=32",
        "--imgnet_hidden=32", "--txtnet_hidden=32", "--noprogress"]

CASES = []


def case(name, expect):
    """Register `setup(tmp) -> main.py arguments` as a case; `expect`: a fragment the error
    line should hold (shown as 'names it?')."""
    def register(setup):
        CASES.append((name, expect, setup))
        return setup
    return register


# --- the base data set and its one-thing-broken variants ---------------------------------------

def _arrays(n=N, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    labels[:, 0] = np.maximum(labels[:, 0], rng.random(n) < 0.3)  # some rows with two labels
    tags = (rng.random((n, 6)) < 0.4).astype(np.float32)
    tags[np.arange(n), rng.integers(0, 6, n)] = 1.0  # every text has a word
    images = rng.normal(size=(n, 8)).astype(np.float32)
    return images, tags, labels


def _custom(tmp, images=None, tags=None, labels=None, image_file="img.npz", tag_file="tags.npz",
            label_file="labels.npz", extra=()):
    """Write the base files (or the arrays given) and return main.py's arguments for them."""
    base = _arrays()
    for name, given, default, key in ((image_file, images, base[0], "X"),
                                      (tag_file, tags, base[1], "Y"),
                                      (label_file, labels, base[2], "L")):
        path = tmp / name
        if not path.exists() and name.endswith(".npz"):
            np.savez(path, **{key: default if given is None else given})
    return ["--dataset=custom", f"--image_file={tmp / image_file}", f"--tag_file={tmp / tag_file}",
            f"--label_file={tmp / label_file}", "--image_key=X", "--tag_key=Y", "--label_key=L",
            f"--workdir={tmp / 'run'}", *FAST, *extra]


def _photos(tmp, n=N, missing=(), broken=()):
    """tmp/photos/im<i>.jpg (16x16) + img_database.txt listing n of them; `missing` rows are
    listed but not written, `broken` rows hold bytes that are no image."""
    from PIL import Image
    folder = tmp / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        path = folder / f"im{i + 1}.jpg"
        if i in broken:
            path.write_bytes(b"this is not a JPEG, whatever the name says")
        elif i not in missing:
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(path)
    (folder / "img_database.txt").write_text("".join(f"im{i + 1}.jpg\n" for i in range(n)))
    return folder


def _metrics(workdir):
    """A metrics.json the case must leave alone (a finished run's record, say)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "metrics.json").write_text(json.dumps({"map_i2t": 0.81, "map_t2i": 0.79}))


# --- data files ----------------------------------------------------------------------------------

@case("truncated .npz", "truncated")
def _(tmp):
    args = _custom(tmp)
    raw = (tmp / "labels.npz").read_bytes()
    (tmp / "labels.npz").write_bytes(raw[:len(raw) // 2])
    return args


@case("random bytes named .npz", "not a .npz archive")
def _(tmp):
    (tmp / "labels.npz").write_bytes(np.random.default_rng(2).bytes(300))
    return _custom(tmp)


@case("truncated .npy", "truncated .npy")
def _(tmp):
    np.save(tmp / "img.npy", _arrays()[0])
    raw = (tmp / "img.npy").read_bytes()
    (tmp / "img.npy").write_bytes(raw[:len(raw) // 2])
    return _custom(tmp, image_file="img.npy")


@case("zero-row image array", "no data")
def _(tmp):
    return _custom(tmp, images=np.zeros((0, 8), np.float32))


@case("zero-row label array", "no data")
def _(tmp):
    return _custom(tmp, labels=np.zeros((0, 3), np.float32))


@case("labels not 0/1", "0/1")
def _(tmp):
    labels = _arrays()[2]
    labels[3, 1] = 2.0
    return _custom(tmp, labels=labels)


@case("NaN image features", "NaN")
def _(tmp):
    images = _arrays()[0]
    images[5, 2] = np.nan
    return _custom(tmp, images=images)


@case("inf in the tags", "inf")
def _(tmp):
    tags = _arrays()[1]
    tags[7, 0] = np.inf
    return _custom(tmp, tags=tags)


@case("items without a label", "label")
def _(tmp):
    labels = _arrays()[2]
    labels[[2, 9]] = 0.0
    return _custom(tmp, labels=labels)


@case("missing --tag_file", "tags_absent.npz")
def _(tmp):
    args = _custom(tmp)
    return [f"--tag_file={tmp / 'tags_absent.npz'}" if a.startswith("--tag_file=") else a
            for a in args]


@case("wrong --label_key", "nope")
def _(tmp):
    return _custom(tmp) + ["--label_key=nope"]


@case("row counts disagree", "rows")
def _(tmp):
    return _custom(tmp, tags=_arrays()[1][:30])


@case("labels of one dimension", "label")
def _(tmp):
    return _custom(tmp, labels=np.ones(N, np.float32))


@case("all-zero image features", "all zero")
def _(tmp):
    return _custom(tmp, images=np.zeros((N, 8), np.float32))


@case("negative text with --text_encoder=bow", "negative")
def _(tmp):
    tags = _arrays()[1]
    tags[:, 0] = -0.5
    return _custom(tmp, tags=tags, extra=["--text_encoder=bow"])


@case("missing --split_file", "split_absent.npz")
def _(tmp):
    return _custom(tmp, extra=[f"--split_file={tmp / 'split_absent.npz'}"])


@case("--dataset=custom without --image_file", "--image_file")
def _(tmp):
    args = _custom(tmp)
    return [a for a in args if not a.startswith("--image_file=")]


# --- flags ------------------------------------------------------------------------------------

# (name, what the error line should name, the bad flag added to the good data set's flags)
for _name, _expect, _flag in (("--bits=abc", "--bits=abc", "--bits=abc"),
                              ("--batch_size=0", "--batch_size", "--batch_size=0"),
                              ("unknown flag --bitz=3", "--bitz", "--bitz=3"),
                              ("--mode=bogus", "--mode=bogus", "--mode=bogus")):
    case(_name, _expect)(lambda tmp, flag=_flag: _custom(tmp) + [flag])


@case("missing --flagfile", "--flagfile")
def _(tmp):
    return [f"--flagfile={tmp / 'absent.cfg'}", f"--workdir={tmp / 'run'}"]


@case("stray argument", "unexpected arguments")
def _(tmp):
    return _custom(tmp) + ["stray"]


# --- the run directory -----------------------------------------------------------------------

@case("workdir under a regular file", "is a file")
def _(tmp):
    (tmp / "blocker").write_text("a regular file\n")
    return _custom(tmp) + [f"--workdir={tmp / 'blocker' / 'run'}"]


@case("--mode=eval on a missing workdir", "no such run directory")
def _(tmp):
    return ["--mode=eval", f"--workdir={tmp / 'never_trained'}"]


@case("--mode=eval on a workdir without a checkpoint", "no selected checkpoint")
def _(tmp):
    _metrics(tmp / "run")
    return ["--mode=eval", f"--workdir={tmp / 'run'}"]


@case("--mode=export on a missing workdir", "no such run directory")
def _(tmp):
    return ["--mode=export", f"--workdir={tmp / 'never_trained'}"]


@case("--query_image_row=-2 on a missing run", "--query_image_row=-2")
def _(tmp):
    return ["--mode=search", "--query_image_row=-2", f"--workdir={tmp / 'never_trained'}"]


@case("resume with a corrupt run.json", "run.json")
def _(tmp):
    _metrics(tmp / "run")
    (tmp / "run" / "run.json").write_text('{"run_id": "abc", "config": {')
    (tmp / "run" / "ckpt").mkdir()  # what makes --mode=train a resume (TF's state file)
    (tmp / "run" / "ckpt" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    return _custom(tmp)


@case("train over a run's metrics.json and run.json, no ckpt/", "--workdir=")
def _(tmp):
    # A finished run whose ckpt/ was deleted to save space (best/ and the records kept).
    _metrics(tmp / "run")
    (tmp / "run" / "run.json").write_text(json.dumps({"run_id": "abc", "config": {"bits": 64}}))
    return _custom(tmp)


# --- raw photos, backbones, TFDS ---------------------------------------------------------------

@case("missing --image_dir photo (train)", "im3.jpg")
def _(tmp):
    folder = _photos(tmp, missing={2})
    args = [a for a in _custom(tmp) if not a.startswith("--image_file=")]
    return args + [f"--image_dir={folder}", "--backbone=efficientnet_lite0"]


@case("undecodable --image_dir photo (train)", "im5.jpg")
def _(tmp):
    folder = _photos(tmp, broken={4})
    args = [a for a in _custom(tmp) if not a.startswith("--image_file=")]
    return args + [f"--image_dir={folder}", "--backbone=efficientnet_lite0"]


def _extract(tmp, folder, *extra):
    return ["--mode=extract", f"--image_dir={folder}", f"--feature_file={tmp / 'out.npz'}",
            "--backbone=efficientnet_lite0", "--noprogress", *extra]


@case("missing --image_dir folder (extract)", "--image_dir=")
def _(tmp):
    return _extract(tmp, tmp / "no_photos_here")


@case("missing --image_dir photo (extract)", "im3.jpg")
def _(tmp):
    return _extract(tmp, _photos(tmp, n=6, missing={2}))


@case("undecodable --image_dir photo (extract)", "im5.jpg")
def _(tmp):
    return _extract(tmp, _photos(tmp, n=6, broken={4}))


@case("missing --backbone_weights file", "--backbone_weights=")
def _(tmp):
    return _extract(tmp, _photos(tmp, n=6), f"--backbone_weights={tmp / 'absent.pth'}")


@case("random bytes as --backbone_weights .pth", "weights.pth")
def _(tmp):
    (tmp / "weights.pth").write_bytes(np.random.default_rng(3).bytes(500))
    return _extract(tmp, _photos(tmp, n=6), f"--backbone_weights={tmp / 'weights.pth'}")


@case("--backbone=cnnf: .mat of the wrong structure", "no 'layers'")
def _(tmp):
    import scipy.io
    scipy.io.savemat(tmp / "vgg-f.mat", {"weights": np.zeros((3, 3))})
    args = _extract(tmp, _photos(tmp, n=6), f"--backbone_weights={tmp / 'vgg-f.mat'}")
    return [a.replace("efficientnet_lite0", "cnnf") for a in args]


@case("--data_source=tfds, nothing built", "--tfds_data_dir=")
def _(tmp):
    (tmp / "tfds").mkdir()
    return ["--dataset=mirflickr", "--data_source=tfds", f"--tfds_data_dir={tmp / 'tfds'}",
            f"--workdir={tmp / 'run'}", *FAST]


# --- running ----------------------------------------------------------------------------------

def _sha1s(root):
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[path] = hashlib.sha1(f.read()).hexdigest()
    return out


def _raised_at(stderr):
    """file:line of the innermost frame of the last traceback in stderr, '' without one."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', stderr)
    if not frames:
        return ""
    path, line = frames[-1]
    try:
        path = os.path.relpath(path, REPO)
    except ValueError:
        pass
    return f"{path}:{line}"


def run_case(name, expect, setup, timeout, keep):
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="udsph_errcase_"))
    try:
        args = setup(tmp)
        before = _sha1s(tmp)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
        for var in ("TF_CONFIG", "UDSPH_TRACEBACK"):
            env.pop(var, None)
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=timeout)
            status, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired as err:
            status = "timeout"
            stderr = (err.stderr or b"").decode(errors="replace") if isinstance(
                err.stderr, bytes) else (err.stderr or "")
        seconds = time.perf_counter() - start
        after = _sha1s(tmp)
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        error_lines = [ln for ln in lines if ln.startswith("error: ")]
        traceback = "Traceback" in stderr
        clean = (status == 2 and last.startswith("error: ") and len(error_lines) == 1
                 and not traceback)
        unchanged = [p for p, h in before.items() if after.get(p) == h]
        return {"case": name, "status": status, "last": last.replace(str(tmp), "TMP"),
                "starts_error": last.startswith("error: "), "traceback": traceback,
                "clean": clean, "names_it": expect in last.replace(str(tmp), "TMP")
                or expect in last, "files": len(before), "unchanged": len(unchanged),
                "raised_at": "" if clean else _raised_at(stderr), "seconds": seconds,
                "tmp": str(tmp)}
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _cell(text, width=110):
    text = text if len(text) <= width else text[:width - 3] + "..."
    return text.replace("|", "\\|")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only the cases whose name contains one "
                        "of these words")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--keep", action="store_true", help="keep each case's temp folder")
    parser.add_argument("--json", default="", help="also write the results here")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or any(w in c[0] for w in args.only)]
    results = []
    for name, expect, setup in cases:
        result = run_case(name, expect, setup, args.timeout, args.keep)
        results.append(result)
        print(f"[{len(results)}/{len(cases)}] {name}: status {result['status']}, "
              f"{result['seconds']:.0f} s", file=sys.stderr, flush=True)

    print("| case | status | message (stderr's last line) | clean? | nothing lost? | names it? |")
    print("|---|---:|---|---|---|---|")
    for r in results:
        clean = "yes" if r["clean"] else (
            "NO: " + ", ".join(filter(None, ["traceback" if r["traceback"] else "",
                                             "" if r["starts_error"] else "no error: line",
                                             "" if r["status"] == 2 else f"status {r['status']}",
                                             f"raised at {r['raised_at']}" if r["raised_at"]
                                             else ""])))
        changed = r["files"] - r["unchanged"]
        lost = "yes" if not changed else f"NO: {changed} changed or gone"
        print(f"| {_cell(r['case'], 60)} | {r['status']} | `{_cell(r['last'])}` | {clean} | "
              f"{lost} ({r['files']} files) | {'yes' if r['names_it'] else 'no'} |")
    n_clean = sum(r["clean"] for r in results)
    unchanged = sum(r["unchanged"] for r in results)
    files = sum(r["files"] for r in results)
    print()
    print(f"{len(results)} cases: {n_clean} refused cleanly (exit 2, one line, no traceback), "
          f"{unchanged} files unchanged (of {files} that existed before the runs)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
