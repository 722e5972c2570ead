"""Benchmark of CrossModalAttention: the Gram-matrix form vs SCAN's literal attended vectors.

Prints, per batch shape, the median time of a forward+backward pass (tf.function, float32, CPU)
of the project's layer and of a SCAN-literal baseline (which materialises the attended vectors,
(n_i, n_t, M, dim) and (n_i, n_t, R, dim)) run in the same process on the same weights, their
ratio, the max |difference| of their outputs, and the peak RSS of a child process running one
step of each (minus a child that only builds the layer).

  python bench/attention.py [--repeats 5] [--shapes 128x1,64x49,128x49] [--naive-max-pairs-r 200000]
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from udsph_tf.models.attention import CrossModalAttention  # noqa: E402

M, REGION_DIM, TOKEN_DIM, DIM = 32, 512, 300, 256


def scan_literal(att, regions, tokens, mask):
    """SCAN's xattn_score_t2i/_i2t vectorised over pairs, attended vectors materialised."""
    v, w, mask = att.project(regions, tokens, mask)
    cos = tf.einsum("ird,tmd->itrm", v, w)
    maskf = tf.cast(mask, tf.float32)[None, :, None, :]
    eps = 1e-8
    attn = tf.nn.softmax(att.lambda_softmax * att._clip_norm(cos, 3, maskf), axis=2)
    ctx = tf.einsum("itrm,ird->itmd", attn, v)                       # (n_i, n_t, M, dim)
    t2i = tf.reduce_sum(ctx * w[None], -1) / tf.maximum(tf.norm(ctx, axis=-1), eps)
    t2i = att._pool(t2i, tf.broadcast_to(mask[None], tf.shape(t2i)))
    logits = att.lambda_softmax * att._clip_norm(cos, 2, 1.0)
    attn = tf.nn.softmax(tf.where(maskf > 0, logits, -1e9 * tf.ones_like(logits)), axis=3)
    ctx = tf.einsum("itrm,tmd->itrd", attn, w)                       # (n_i, n_t, R, dim)
    i2t = tf.reduce_sum(ctx * v[:, None], -1) / tf.maximum(tf.norm(ctx, axis=-1), eps)
    i2t = att._pool(i2t, tf.ones_like(i2t, tf.bool))
    sim = (t2i + i2t) / 2
    return tf.where(tf.reduce_any(mask, 1)[None], sim, tf.zeros_like(sim))


def setup(n, regions_per_image, seed=0):
    rng = np.random.default_rng(seed)
    att = CrossModalAttention(REGION_DIM, TOKEN_DIM, dim=DIM)
    regions = tf.constant(rng.standard_normal((n, regions_per_image, REGION_DIM)), tf.float32)
    tokens = tf.constant(rng.standard_normal((n, M, TOKEN_DIM)), tf.float32)
    # MIRFlickr texts have a few tags each: 1..12 valid tokens of 32.
    valid = rng.integers(1, 13, size=n)
    mask = tf.constant(np.arange(M)[None] < valid[:, None])
    att(regions[:2], tokens[:2], mask[:2])  # build on a tiny batch: setup RSS stays small
    return att, regions, tokens, mask


def step_fn(att, variant):
    forward = att.__call__ if variant == "gram" else (lambda *a: scan_literal(att, *a))

    @tf.function
    def step(regions, tokens, mask):
        with tf.GradientTape() as tape:
            tape.watch(regions)
            sim = forward(regions, tokens, mask)
            loss = tf.reduce_sum(tf.square(sim))
        grads = tape.gradient(loss, att.trainable_variables + [regions])
        return sim, tf.add_n([tf.reduce_sum(g) for g in grads])
    return step


def child(variant, n, r):
    """One step in a fresh process; prints its peak RSS in MB."""
    att, regions, tokens, mask = setup(n, r)
    if variant != "none":
        step_fn(att, variant)(regions, tokens, mask)[1].numpy()
    # VmHWM, not ru_maxrss: the latter keeps the (large) parent's peak across fork + exec.
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"peak_rss_mb": hwm_kb / 1024}))


def peak_rss(variant, n, r):
    out = subprocess.run([sys.executable, __file__, "--child", variant, str(n), str(r)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def timed(step, args, repeats):
    step(*args)[1].numpy()  # trace + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(*args)[1].numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", default="128x1,64x49,128x49",
                        help="comma-separated n x R (n images and n texts per batch)")
    parser.add_argument("--naive-max-pairs-r", type=int, default=250_000,
                        help="skip the baseline when n*n*R exceeds this (its memory)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    print(f"CrossModalAttention fwd+bwd, direction=both, pool=lse, M={M}, dim={DIM}, "
          f"region_dim={REGION_DIM}, token_dim={TOKEN_DIM}, {args.repeats} repeats, "
          f"TF {tf.__version__}, {os.cpu_count()} CPUs")
    print(f"{'n x R':>8} {'variant':>12} {'median ms':>10} {'ratio':>7} {'max|diff|':>10} "
          f"{'peak RSS MB (minus setup)':>26}")
    for shape in args.shapes.split(","):
        n, r = (int(s) for s in shape.lower().split("x"))
        att, regions, tokens, mask = setup(n, r)
        base_rss = peak_rss("none", n, r)
        variants = ["gram"] + (["scan_literal"] if n * n * r <= args.naive_max_pairs_r else [])
        results = {}
        for variant in variants:
            step = step_fn(att, variant)
            results[variant] = (timed(step, (regions, tokens, mask), args.repeats),
                                step(regions, tokens, mask)[0].numpy(),
                                peak_rss(variant, n, r) - base_rss)
        base_t = results[variants[-1]][0]
        for variant in variants:
            t, sim, rss = results[variant]
            diff = np.abs(sim - results["gram"][1]).max()
            print(f"{shape:>8} {variant:>12} {1e3 * t:10.1f} {t / base_t:7.2f} {diff:10.2e} "
                  f"{rss:26.0f}")
        if len(variants) == 1:
            print(f"{shape:>8} {'scan_literal':>12} {'skipped (memory)':>10}")


if __name__ == "__main__":
    main()
