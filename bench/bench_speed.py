"""What makes the training steps faster at MIRFlickr scale: variants against a baseline.

    python bench/bench_speed.py [--repeats 5] [--steps 3] [--variants baseline bf16 xla ...]
    python bench/bench_speed.py --repeats 5 --steps 3 --variants fused_adam

Data and model as bench/bench_train_throughput.py (10,000 training pairs, 4,096-d image features,
1,386-d tags, batch 128, SSAH widths, 32 bits, UDSPH, one replica). Every variant builds its own
Task in this process; the repeats are interleaved (baseline, variant, baseline, ...) so load
from other jobs on the shared cores falls on all of them alike. Printed per network step: the
median over repeats of the seconds per step and its ratio to the baseline (< 1 = faster), plus
how often each step function was traced (retracing) and the input pipeline's share.

Variants: baseline (float32, no XLA), bf16 (--mixed_precision=bf16), fp16, xla (--jit_compile),
xla_bf16, noatt (--attention=none: the SSAH model) and noatt_xla, small_n (1,000 training
pairs: the batch x N buffer terms' cost, as the ratio of step times at N=1,000 and N=10,000),
fused_adam (--fused_adam: one ResourceApplyAdam per variable). With fused_adam the optimizer's
update alone is timed too: apply_gradients of fixed gradients through strategy.run on each
network's variables, Keras Adam (the baseline's optimizers) against FusedAdam (the variant's),
interleaved, median over repeats of the milliseconds per update.

    python bench/bench_speed.py --repeats 5 --steps 5 --variants baseline --host_sync

--host_sync adds a table of the Trainer's per-step host round trips (it bumps a checkpointed
step counter and reads every logged loss back as a float after each step, so each step waits
for the previous one) against the same steps dispatched back to back, on the baseline's Task.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_train_throughput import BATCH, mirflickr_scale_data  # noqa: E402
from udsph_tf.config import Config  # noqa: E402
from udsph_tf.data.types import Split  # noqa: E402
from udsph_tf.modes.train import make_trainer  # noqa: E402

VARIANTS = {
    "baseline": {},
    "bf16": {"mixed_precision": "bf16"},
    "fp16": {"mixed_precision": "fp16"},
    "xla": {"jit_compile": True},
    "xla_bf16": {"jit_compile": True, "mixed_precision": "bf16"},
    "noatt": {"attention": "none"},
    "noatt_xla": {"attention": "none", "jit_compile": True},
    "small_n": {},
    "fused_adam": {"fused_adam": True},
}


_STRATEGY = []


def _strategy():
    """One strategy for every variant (separate ones on one device clash in their collectives)."""
    if not _STRATEGY:
        _STRATEGY.append(tf.distribute.MirroredStrategy(["/cpu:0"]))
    return _STRATEGY[0]


def build(name, data, split):
    if name == "small_n":  # the same batches, 1,000 buffer rows instead of 10,000
        split = Split(query_idx=split.query_idx, database_idx=split.database_idx,
                      train_idx=split.train_idx[:1000], val_idx=split.val_idx, seed=0)
    config = Config(workdir=tempfile.mkdtemp(), batch_size=BATCH, bits=32, progress=False,
                    **{"mixed_precision": "off", **VARIANTS[name]})
    trainer = make_trainer(config, strategy=_strategy(), data=data, split=split).task
    trainer.fill_buffers()
    state = {}
    for net in trainer.networks:
        state[net] = (trainer.steps.step(net), iter(trainer.dataset(seed=0)))
    return trainer, state


def time_steps(trainer, step, iterator, steps, host_sync=False):
    """Seconds per step. host_sync: also do the Trainer's per-step host work (bump the
    checkpointed step counter, read every logged loss back as a Python float, which waits
    for the step); otherwise only the last step's total is read."""
    batches = [next(iterator) for _ in range(steps)]
    counter = tf.Variable(0, dtype=tf.int64) if host_sync else None
    t0 = time.perf_counter()
    for b in batches:
        logs = step(b)
        if host_sync:
            counter.assign_add(1)
            logs = {k: float(v) for k, v in logs.items()}
    float(logs["total"])
    return (time.perf_counter() - t0) / steps, logs


def host_sync_table(built, networks, repeats, steps):
    """The Trainer's per-step host round trips (Trainer.train_epoch) against steps dispatched
    back to back, interleaved on the baseline's Task: median seconds per step and the ratio."""
    trainer, state = built["baseline"]
    times = {(net, sync): [] for net in networks for sync in (False, True)}
    for _ in range(repeats):
        for net in networks:
            for sync in (False, True):
                times[(net, sync)].append(time_steps(trainer, *state[net], steps, sync)[0])
    print("per-step host round trips (the Trainer's step counter and loss read-back), "
          f"median of {repeats} repeats of {steps} steps:")
    print(f"{'network':<8} {'free s/step':>12} {'synced s/step':>14} {'synced/free':>12}")
    for net in networks:
        free = statistics.median(times[(net, False)])
        synced = statistics.median(times[(net, True)])
        print(f"{net:<8} {free:>12.3f} {synced:>14.3f} {synced / free:>12.2f}")


def input_seconds(iterator, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(iterator)
    tf.nest.map_structure(lambda t: t, b)
    return (time.perf_counter() - t0) / steps


def adam_apply_fn(trainer, net):
    """A tf.function applying fixed gradients (scale 1e-3) to `net`'s variables, as the step's
    _apply does after tape.gradient; returns the optimizer's step count (to wait on)."""
    variables = trainer.steps.train_variables(net)
    opt = trainer.optimizers[net]
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(scale=1e-3, size=v.shape).astype(np.float32))
             for v in variables]

    @tf.function(autograph=False)
    def apply():
        trainer.strategy.run(lambda: opt.apply_gradients(zip(grads, variables)))
        return tf.convert_to_tensor(opt.iterations)

    return apply


def time_apply(apply, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        out = apply()
    np.asarray(out)
    return (time.perf_counter() - t0) / calls


def adam_table(built, networks, repeats, calls):
    """Milliseconds per optimizer update, Keras Adam (baseline) vs FusedAdam (fused_adam)."""
    fns = {(name, net): adam_apply_fn(built[name][0], net)
           for name in ("baseline", "fused_adam") for net in networks}
    for fn in fns.values():  # trace + warm-up
        time_apply(fn, 1)
    times = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            times[key].append(time_apply(fn, calls))
    print(f"optimizer update alone (median of {repeats} repeats of {calls} updates):")
    print(f"{'network':<8} {'variables':>10} {'Keras ms':>9} {'fused ms':>9} {'fused/Keras':>12}")
    for net in networks:
        keras_ms = statistics.median(times[("baseline", net)]) * 1000
        fused_ms = statistics.median(times[("fused_adam", net)]) * 1000
        size = sum(int(np.prod(v.shape))
                   for v in built["baseline"][0].steps.train_variables(net))
        print(f"{net:<8} {size:>10,} {keras_ms:>9.1f} {fused_ms:>9.1f} "
              f"{fused_ms / keras_ms:>12.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["bf16", "xla", "noatt", "noatt_xla",
                                                          "small_n"])
    parser.add_argument("--networks", nargs="+", default=["labnet", "disc", "imgnet", "txtnet"])
    parser.add_argument("--apply_calls", type=int, default=5,
                        help="optimizer updates per repeat in the fused_adam update table")
    parser.add_argument("--host_sync", action="store_true",
                        help="also time the Trainer's per-step host round trips")
    args = parser.parse_args()
    data, split = mirflickr_scale_data()
    names = ["baseline"] + [v for v in args.variants if v != "baseline"]
    built = {}
    for name in names:
        t0 = time.perf_counter()
        built[name] = build(name, data, split)
        trainer, state = built[name]
        for net in args.networks:  # trace + warm-up
            time_steps(trainer, state[net][0], state[net][1], 1)
        print(f"built + traced {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    times = {(n, net): [] for n in names for net in args.networks}
    finite = {}
    for _ in range(args.repeats):
        for net in args.networks:
            for name in names:
                trainer, state = built[name]
                sec, logs = time_steps(trainer, *state[net], args.steps)
                times[(name, net)].append(sec)
                finite[(name, net)] = bool(np.isfinite(float(logs["total"])))
    _, base_state = built["baseline"]
    feed = input_seconds(base_state["imgnet"][1], 20)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
          f"median of {args.repeats} repeats of {args.steps} steps, batch {BATCH}")
    print(f"{'variant':<10} {'network':<8} {'s/step':>8} {'vs baseline':>12} {'traces':>7} "
          f"{'finite loss':>12}")
    for name in names:
        trainer, state = built[name]
        for net in args.networks:
            med = statistics.median(times[(name, net)])
            base = statistics.median(times[("baseline", net)])
            traces = state[net][0].experimental_get_tracing_count()
            print(f"{name:<10} {net:<8} {med:>8.3f} {med / base:>12.2f} {traces:>7} "
                  f"{str(finite[(name, net)]):>12}")
    print(f"input pipeline alone: {feed * 1000:.1f} ms per batch (next() on the distributed "
          "iterator, prefetched; compare with s/step)")
    if "fused_adam" in built:
        adam_table(built, args.networks, args.repeats, args.apply_calls)
    if args.host_sync:
        host_sync_table(built, args.networks, args.repeats, args.steps)


if __name__ == "__main__":
    main()
    # Several trainers' open distributed iterators made the interpreter's exit hang here.
    sys.stdout.flush()
    os._exit(0)
