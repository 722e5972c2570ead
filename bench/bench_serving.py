"""Benchmark the serving path: exported SavedModels vs the in-process Keras models / numpy search.

Usage: python bench/bench_serving.py [--image_dim 4096] [--tag_dim 1386] [--bits 32,64]
       [--db_sizes 18015,193734] [--k 100] [--repeats 30] [--threads 2]

Part 1, encoders (ImgNet on --image_dim features, TxtNet on a --tag_dim BoW, SSAH widths
4096/512): batch-1 latency (median of --repeats calls) and batch-256 throughput (items/s,
median of --repeats // 3 calls) for (a) the Keras model called eagerly, (b) the same model in a
tf.function, (c) the loaded SavedModel's serving_default. Ratios are to (a).
Part 2, retrieval: the image_to_text SavedModel's `search_packed` signature (xor/popcount +
top-k inside TF) vs udsph_tf.retrieval.HammingIndex (numpy backend) on the same packed
queries; batch 1 latency and a 100-query batch, database of --db_sizes random codes. Results
are checked equal (ids and distances). Networks are randomly initialised: speed does not
depend on the trained values. Figures are for this machine only; run once, not in a loop.
"""

import argparse
import os
import platform
import tempfile

import numpy as np

from timing import median_seconds  # bench/timing.py


def _latency_and_throughput(fn, one, batch, repeats):
    """Median batch-1 latency (s) and items/s on `batch`, each after one warm-up call."""
    latency = median_seconds(lambda: fn(one), repeats, warmup=True)
    return latency, len(batch) / median_seconds(lambda: fn(batch), max(3, repeats // 3),
                                                warmup=True)


def bench_encoders(args, tf, out_rows):
    from udsph_tf.config import Config
    from udsph_tf.export.encoders import image_encoder_module, text_encoder_module
    from udsph_tf.models import build_models
    config = Config(bits=args.bits[0], attention="none", adversarial=False, label_net=False)
    models = build_models(config, (args.image_dim,), args.tag_dim, 24)
    tmp = tempfile.mkdtemp(prefix="bench_serving_")
    rng = np.random.default_rng(0)
    cases = (("image", models["imgnet"], image_encoder_module(models["imgnet"], (args.image_dim,)),
              "image_features", lambda n: rng.random((n, args.image_dim), np.float32)),
             ("text", models["txtnet"], text_encoder_module(models["txtnet"], args.tag_dim),
              "tags", lambda n: (rng.random((n, args.tag_dim)) < 0.01).astype(np.float32)))
    for name, model, module, input_name, make in cases:
        path = os.path.join(tmp, name, "1")
        tf.saved_model.save(module, path, signatures=module.signatures())
        sig = tf.saved_model.load(path).signatures["serving_default"]
        graph = tf.function(lambda x, m=model: m(x, training=False))
        x1, xb = tf.constant(make(1)), tf.constant(make(256))
        # Same numbers from all three paths before timing them.
        np.testing.assert_allclose(sig(**{input_name: xb})["hash"].numpy(),
                                   model(xb, training=False)["hash"].numpy(), atol=1e-5)
        engines = (("keras eager", lambda x: model(x, training=False)),
                   ("keras tf.function", graph),
                   ("SavedModel signature", lambda x: sig(**{input_name: x})))
        base_lat = base_thr = None
        for engine, fn in engines:
            lat, thr = _latency_and_throughput(fn, x1, xb, args.repeats)
            base_lat, base_thr = base_lat or lat, base_thr or thr
            out_rows.append((f"{name} encoder", engine, f"{lat * 1e3:.2f}", f"{lat / base_lat:.2f}",
                             f"{thr:,.0f}", f"{thr / base_thr:.2f}"))


def bench_retrieval(args, tf, out_rows):
    from udsph_tf.config import Config
    from udsph_tf.export.retrieval_model import RetrievalModule
    from udsph_tf.models import build_models
    from udsph_tf.retrieval import HammingIndex
    rng = np.random.default_rng(1)
    tmp = tempfile.mkdtemp(prefix="bench_retrieval_")
    for bits in args.bits:
        config = Config(bits=bits, attention="none", adversarial=False, label_net=False,
                        imgnet_hidden=64, txtnet_hidden=64, feature_dim=32)
        imgnet = build_models(config, (16,), 32, 4)["imgnet"]
        for n in args.db_sizes:
            db = rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
            module = RetrievalModule(imgnet, "image_features", (16,), db, np.arange(n), bits,
                                     args.k)
            path = os.path.join(tmp, f"{bits}_{n}", "1")
            tf.saved_model.save(module, path, signatures=module.signatures())
            sig = tf.saved_model.load(path).signatures["search_packed"]
            index = HammingIndex.build(db, "numpy", num_threads=args.threads)
            q1 = rng.integers(0, 256, (1, bits // 8), dtype=np.uint8)
            qb = rng.integers(0, 256, (100, bits // 8), dtype=np.uint8)
            got = sig(packed_codes=tf.constant(qb))
            ref = index.search(qb, args.k)
            same = (np.array_equal(got["positions"].numpy(), ref[0])
                    and np.array_equal(got["distances"].numpy(), ref[1]))
            engines = (("numpy HammingIndex", lambda q: index.search(q, args.k)),
                       ("SavedModel search_packed",
                        lambda q: sig(packed_codes=tf.constant(q))))
            base_lat = base_thr = None
            for engine, fn in engines:
                lat, thr = _latency_and_throughput(fn, q1, qb, args.repeats)
                base_lat, base_thr = base_lat or lat, base_thr or thr
                out_rows.append((f"top-{args.k}, {n:,} x {bits} bits", engine,
                                 f"{lat * 1e3:.2f}", f"{lat / base_lat:.2f}",
                                 f"{thr:,.0f}", f"{thr / base_thr:.2f}",
                                 "yes" if same else "NO"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image_dim", type=int, default=4096)
    parser.add_argument("--tag_dim", type=int, default=1386)
    parser.add_argument("--bits", default="32,64")
    parser.add_argument("--db_sizes", default="18015,193734")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.bits = [int(b) for b in args.bits.split(",")]
    args.db_sizes = [int(s) for s in args.db_sizes.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"TF {tf.__version__}, intra-op threads {args.threads}")
    rows = []
    bench_encoders(args, tf, rows)
    print(f"\nEncoders (image {args.image_dim}-d features, tags {args.tag_dim}-d, "
          f"{args.bits[0]} bits, SSAH widths); ratio = vs keras eager")
    head = ("model", "engine", "batch-1 ms", "ratio", "batch-256 items/s", "ratio")
    _table(head, rows)
    rows = []
    bench_retrieval(args, tf, rows)
    print(f"\nRetrieval (packed queries, random database codes); ratio = vs numpy "
          f"HammingIndex ({args.threads} threads)")
    _table(head[:4] + ("100-query batch q/s", "ratio", "same results"), rows)


def _table(head, rows):
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    for r in (head, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))


if __name__ == "__main__":
    main()
