"""MIRFlickr-scale training benchmark: the standard protocol through `python main.py`.

    python bench/mirflickr_scale.py                 # flags/mirflickr.cfg's budget, 32 bits, one run
    python bench/mirflickr_scale.py --epochs 1 --num_train 2000        # a short look (minutes)
    python bench/mirflickr_scale.py --bits 16 32 --repeats 2 --set mixed_precision=bf16

Data: the real labels and tags of all 20,015 MIRFlickr-25K pairs (`../shared/data/mirflickr25k`,
or $UDSPH_SHARED_DATA/mirflickr25k) with GENERATED 4,096-d image features that carry the labels'
signal (their real CNN features cannot be had here; `make_image_features`), written once to a
cache folder (~/.cache/udsph_tf/bench, never the repository). Split: `--dataset=mirflickr`'s
standard one, 2,000 queries / 18,015 database / 10,000 training (500 of them carved out for
validation). Each run is a subprocess of main.py; printed per epoch: each network's step time,
the B refresh, validation, checkpoint writing and the validation MAP (the run's history.json),
then the run's wall time, peak resident memory (wait4 of the child), bytes it wrote
(/proc/<pid>/io write_bytes, sampled) and what its run directory keeps.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_ITEMS, IMAGE_DIM, NUM_LABELS = 20015, 4096, 24


def shared_mirflickr_dir():
    base = os.environ.get("UDSPH_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))
    return os.path.abspath(os.path.join(base, "mirflickr25k"))


def make_image_features(labels, image_dim=IMAGE_DIM, seed=0, label_noise=0.8, latent_dim=32,
                        noise=0.5, chunk=4096):
    """Non-negative (ReLU, like CNN fc7) float32 features of shape (n, image_dim) whose signal is
    the labels: relu((L + label_noise * e) @ W + z @ V + noise * u), with e, z, u standard normal
    per item, W (C, D) and V (latent_dim, D) fixed random maps. label_noise blurs which concepts an
    image shows (so the features do not give the labels away), z is item content unrelated to
    the labels. Deterministic in seed; built in row chunks to bound memory."""
    labels = np.asarray(labels, np.float32)
    n, c = labels.shape
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((c, image_dim)) / np.sqrt(max(labels.sum(1).mean(), 1.0))
         ).astype(np.float32)
    v = (rng.standard_normal((latent_dim, image_dim)) / np.sqrt(latent_dim)).astype(np.float32)
    out = np.empty((n, image_dim), np.float32)
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        m = rows.stop - rows.start
        x = (labels[rows] + label_noise * rng.standard_normal((m, c), dtype=np.float32)) @ w
        x += rng.standard_normal((m, latent_dim), dtype=np.float32) @ v
        x += noise * rng.standard_normal((m, image_dim), dtype=np.float32)
        out[rows] = np.maximum(x, 0.0)
    return out


def cached_features(cache_dir, data_dir, seed=0):
    """Path of the generated feature file for the real labels (made once; ~330 MB)."""
    from scipy.io import loadmat
    labels = loadmat(os.path.join(data_dir, "mirflickr25k-lall.mat"))["LAll"]
    key = hashlib.sha1(labels.tobytes() + f"{IMAGE_DIM}-{seed}-v1".encode()).hexdigest()[:12]
    path = os.path.join(cache_dir, f"mirflickr25k_generated_fc7_{key}.npy")
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        t0 = time.time()
        feats = make_image_features(labels, seed=seed)
        tmp = f"{path}.tmp{os.getpid()}.npy"
        np.save(tmp, feats)
        os.replace(tmp, path)
        print(f"generated {feats.shape} image features in {time.time() - t0:.0f} s -> {path}",
              flush=True)
    return path


def load_arrays(data_dir, cache_dir, tag_dim=1386):
    """(images, tags, labels, source) of all 20,015 items, in-process (benches that time one
    part of a run): the real labels and tags with the cached generated image features (an
    np.load memory map), or generated labels and tags of the same shapes without the data."""
    if os.path.exists(os.path.join(data_dir, "mirflickr25k-yall.mat")):
        from scipy.io import loadmat
        labels = loadmat(os.path.join(data_dir, "mirflickr25k-lall.mat"))["LAll"]
        tags = loadmat(os.path.join(data_dir, "mirflickr25k-yall.mat"))["YAll"]
        images = np.load(cached_features(cache_dir, data_dir), mmap_mode="r")
        return images, tags.astype(np.float32), labels.astype(np.float32), "real tags/labels"
    rng = np.random.default_rng(0)
    labels = (rng.random((N_ITEMS, NUM_LABELS)) < 0.16).astype(np.float32)
    labels[labels.sum(1) == 0, 0] = 1
    tags = (rng.random((N_ITEMS, tag_dim)) < 0.005).astype(np.float32)
    return make_image_features(labels), tags, labels, "generated labels/tags"


def _write_bytes(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _dir_bytes(path):
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(base, name))
            except OSError:
                pass
    return total


def run_once(args, workdir, image_file, bits, seed, log):
    """One main.py training run; returns its measurements (and prints its epoch table)."""
    cmd = [sys.executable, os.path.join(ROOT, "main.py"),
           f"--flagfile={os.path.join(ROOT, 'flags', 'mirflickr.cfg')}",
           f"--data_dir={args.data_dir}", f"--image_file={image_file}", f"--workdir={workdir}",
           f"--bits={bits}", f"--seed={seed}", "--noprogress"]
    if args.epochs:
        cmd.append(f"--epochs={args.epochs}")
    if args.num_train:
        cmd.append(f"--num_train={args.num_train}")
    cmd += [f"--{kv}" for kv in args.set]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        written = {"last": 0}

        def sample():  # /proc/<pid>/io disappears at exit: keep the last reading
            while proc.poll() is None:
                value = _write_bytes(proc.pid)
                if value is not None:
                    written["last"] = value
                time.sleep(0.5)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.join()
    wall = time.time() - t0
    if proc.returncode != 0:
        with open(log) as f:
            sys.stdout.write(f.read()[-3000:])
        raise SystemExit(f"main.py exited with {proc.returncode} (log {log})")
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    return {"wall": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "written_mb": written["last"] / 2**20, "kept_mb": _dir_bytes(workdir) / 2**20,
            "metrics": metrics}


def print_run(result):
    m = result["metrics"]
    nets = ["labnet", "disc", "imgnet", "txtnet"]
    head = (f"{'epoch':>5} " + " ".join(f"{n + ' s':>9}" for n in nets)
            + f" {'refresh s':>9} {'val s':>7} {'ckpt s':>7} {'epoch s':>8} {'val i2t':>8} "
              f"{'val t2i':>8}")
    print(head)
    for h in m["history"]:
        steps = h.get("step_seconds", {})
        val = h.get("val", {})
        print(f"{h['epoch']:>5} " + " ".join(f"{steps.get(n, float('nan')):>9.1f}" for n in nets)
              + f" {h.get('refresh_seconds', float('nan')):>9.2f}"
                f" {h.get('validation_seconds', float('nan')):>7.1f}"
                f" {h.get('checkpoint_seconds', float('nan')):>7.1f} {h['seconds']:>8.1f}"
                f" {val.get('map_i2t', float('nan')):>8.4f}"
                f" {val.get('map_t2i', float('nan')):>8.4f}")
    t, floor = m["test"], m.get("linear_floor") or {}
    print(f"test MAP I->T {t['map_i2t']:.4f} T->I {t['map_t2i']:.4f} (floor "
          f"{floor.get('map_i2t', float('nan')):.4f} / {floor.get('map_t2i', float('nan')):.4f}, "
          f"chance {m['chance']['map_random_codes_i2t']:.4f}; selected epoch "
          f"{m['selection']['best_epoch']}); split {m['split_sizes']}")
    print(f"wall {result['wall']:.0f} s (training {m.get('train_seconds', float('nan')):.0f} s); "
          f"peak RSS {result['peak_rss_mb']:.0f} MB; written {result['written_mb']:.0f} MB; "
          f"run directory keeps {result['kept_mb']:.0f} MB", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[32])
    parser.add_argument("--epochs", type=int, default=0,
                        help="0 = the budget of flags/mirflickr.cfg (6 epochs)")
    parser.add_argument("--num_train", type=int, default=0,
                        help="training items (0 = the standard 10,000); fewer for a short look")
    parser.add_argument("--repeats", type=int, default=1, help="runs per bit length (seeds 0..)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FLAG=VALUE",
                        help="more main.py flags, e.g. mixed_precision=bf16 jit_compile=true")
    parser.add_argument("--data_dir", default=shared_mirflickr_dir())
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/udsph_tf/bench"))
    parser.add_argument("--workroot", default="/tmp/udsph_mirflickr_scale")
    parser.add_argument("--keep_runs", action="store_true",
                        help="keep each run directory (default: deleted after it is measured)")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(args.data_dir, "mirflickr25k-lall.mat")):
        raise SystemExit(f"no MIRFlickr labels/tags in {args.data_dir} (set UDSPH_SHARED_DATA)")
    image_file = cached_features(args.cache_dir, args.data_dir)
    results = []
    for bits in args.bits:
        for seed in range(args.repeats):
            workdir = os.path.join(args.workroot, f"b{bits}_s{seed}_{os.getpid()}")
            shutil.rmtree(workdir, ignore_errors=True)
            os.makedirs(args.workroot, exist_ok=True)
            result = run_once(args, workdir, image_file, bits, seed, workdir + ".log")
            print_run(result)
            results.append((bits, seed, result))
            if not args.keep_runs:
                shutil.rmtree(workdir, ignore_errors=True)
    if len(results) > 1:
        print(f"{'bits':>4} {'seed':>4} {'wall s':>7} {'I->T':>7} {'T->I':>7} {'RSS MB':>7} "
              f"{'written MB':>10}")
        for bits, seed, r in results:
            t = r["metrics"]["test"]
            print(f"{bits:>4} {seed:>4} {r['wall']:>7.0f} {t['map_i2t']:>7.4f} "
                  f"{t['map_t2i']:>7.4f} {r['peak_rss_mb']:>7.0f} {r['written_mb']:>10.0f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
