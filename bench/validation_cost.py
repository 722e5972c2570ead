"""Where the per-epoch validation time goes at MIRFlickr scale (Trainer.validate).

    python bench/validation_cost.py [--repeats 3]

Data as bench/mirflickr_scale.py (real labels and tags, generated 4,096-d image features, the
standard split: 500 validation queries against the 17,515 other database items), the default
model (SSAH widths, 32 bits, float32, one replica), untrained weights: the cost of a validation
does not depend on them. Printed: the median over repeats of each part, timed in this process:
encoding the queries and the retrieval set per network, the two MAPs, the collapse statistics,
and the whole Trainer.validate().
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

from mirflickr_scale import N_ITEMS, load_arrays, shared_mirflickr_dir  # noqa: E402
from udsph_tf.codes import to_codes  # noqa: E402
from udsph_tf.config import Config  # noqa: E402
from udsph_tf.data import make_split  # noqa: E402
from udsph_tf.data.types import CrossModalData  # noqa: E402
from udsph_tf.evaluation import collapse_stats, mean_average_precision  # noqa: E402
from udsph_tf.modes.train import make_trainer  # noqa: E402


def parts(trainer):
    """{part: seconds} of one validation, each part timed alone (the order of validate)."""
    task, s = trainer.task, trainer.task.split
    retrieval = np.setdiff1d(s.database_idx, s.val_idx)
    d = task.data
    out, codes = {}, {}
    for name, net, x in (("encode queries, imgnet", "imgnet", d.images[s.val_idx]),
                         ("encode queries, txtnet", "txtnet", d.tags[s.val_idx]),
                         ("encode retrieval set, imgnet", "imgnet", d.images[retrieval]),
                         ("encode retrieval set, txtnet", "txtnet", d.tags[retrieval])):
        start = time.perf_counter()
        codes[name] = to_codes(task._encoder(net)(x)["hash"])
        out[name] = time.perf_counter() - start
    ql, rl = d.labels[s.val_idx], d.labels[retrieval]
    start = time.perf_counter()
    mean_average_precision(codes["encode queries, imgnet"],
                           codes["encode retrieval set, txtnet"], ql, rl)
    mean_average_precision(codes["encode queries, txtnet"],
                           codes["encode retrieval set, imgnet"], ql, rl)
    out["MAP, both directions"] = time.perf_counter() - start
    start = time.perf_counter()
    collapse_stats(codes["encode retrieval set, imgnet"], rl)
    collapse_stats(codes["encode retrieval set, txtnet"], rl)
    out["collapse statistics, both"] = time.perf_counter() - start
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data_dir", default=shared_mirflickr_dir())
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/udsph_tf/bench"))
    args = parser.parse_args()
    images, tags, labels, source = load_arrays(args.data_dir, args.cache_dir)
    data = CrossModalData("mirflickr_scale", np.asarray(images), tags, labels,
                          np.arange(N_ITEMS))
    split = make_split(N_ITEMS, "mirflickr", 0)
    config = Config(workdir=tempfile.mkdtemp(), bits=32, progress=False, dataset="mirflickr")
    trainer = make_trainer(config, data=data, split=split)
    trainer.validate()  # trace the encoders
    times = {}
    for _ in range(args.repeats):
        for name, sec in parts(trainer).items():
            times.setdefault(name, []).append(sec)
        start = time.perf_counter()
        trainer.validate()
        times.setdefault("whole Trainer.validate()", []).append(time.perf_counter() - start)
    print(f"{source}; {len(split.val_idx)} validation queries, "
          f"{len(split.database_idx) - len(split.val_idx)} retrieval items; median of "
          f"{args.repeats} repeats; load average at the end {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"| {'part':<30} | {'seconds':>8} |")
    print(f"|{'-' * 32}|{'-' * 10}|")
    for name, secs in times.items():
        print(f"| {name:<30} | {statistics.median(secs):>8.2f} |")


if __name__ == "__main__":
    main()
