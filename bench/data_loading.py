"""Reading the 20,015 x 1386 MIRFlickr tag matrix in each supported format, and whole datasets.

    python bench/data_loading.py [--data_dir ../shared/data/mirflickr25k] [--repeats 5]

The real YAll is rewritten into a temporary folder as .mat v5, .mat v7.3, .h5, .npz and .npy;
prints the median wall/CPU seconds of read_array per format and the wall-time ratio to
scipy.io.loadmat of the real v5 file (the baseline, run in this process), then load_dataset and
generate_default times.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402

from udsph_tf.data import generate_default, load_dataset, read_array  # noqa: E402
from udsph_tf.data.writers import write_mat73, write_mat_v5  # noqa: E402


def median_seconds(fn, repeats):
    """Median wall and CPU seconds (CPU time shows the cost when the machine is shared)."""
    fn()  # warm-up (imports, page cache)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=os.path.join(here, "..", "..", "shared", "data",
                                                           "mirflickr25k"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    real = os.path.join(args.data_dir, "mirflickr25k-yall.mat")
    if not os.path.isfile(real):
        sys.exit(f"real MIRFlickr data not found at {args.data_dir} (give --data_dir)")

    tags = read_array(real, "YAll")
    rows = [("scipy.io.loadmat, real v5 .mat (baseline)",
             lambda: scipy.io.loadmat(real, variable_names=["YAll"])["YAll"])]
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"v5": os.path.join(tmp, "y5.mat"), "v73": os.path.join(tmp, "y73.mat"),
                 "h5": os.path.join(tmp, "y.h5"), "npz": os.path.join(tmp, "y.npz"),
                 "npy": os.path.join(tmp, "y.npy")}
        write_mat_v5(paths["v5"], {"YAll": tags})
        write_mat73(paths["v73"], {"YAll": tags})
        with h5py.File(paths["h5"], "w") as f:
            f["YAll"] = tags
        np.savez(paths["npz"], YAll=tags)
        np.save(paths["npy"], tags)
        rows += [
            ("read_array, real v5 .mat", lambda: read_array(real, "YAll")),
            ("read_array, v5 .mat (compressed, rewritten)",
             lambda: read_array(paths["v5"], "YAll")),
            ("read_array, v7.3 .mat (HDF5, transposed back)",
             lambda: read_array(paths["v73"], "YAll")),
            ("read_array, .h5", lambda: read_array(paths["h5"], "YAll")),
            ("read_array, .npz", lambda: read_array(paths["npz"], "YAll")),
            ("read_array, .npy (memory-mapped, then summed)",
             lambda: read_array(paths["npy"]).sum()),
        ]
        print(f"YAll {tags.shape} {tags.dtype}, median of {args.repeats} reads")
        print(f"{'reader':50s} {'wall s':>8s} {'cpu s':>8s} {'vs baseline':>12s}")
        baseline = None
        for name, fn in rows:
            sec, cpu = median_seconds(fn, args.repeats)
            baseline = baseline or sec
            print(f"{name:50s} {sec:8.3f} {cpu:8.3f} {baseline / sec:11.2f}x")

    print()
    print(f"{'whole dataset':50s} {'wall s':>8s} {'cpu s':>8s}")
    for name, fn in [
            ("load_dataset('mirflickr730')", lambda: load_dataset("mirflickr730", args.data_dir)),
            ("generate_default() (4,000 items)", generate_default)]:
        sec, cpu = median_seconds(fn, args.repeats)
        print(f"{name:50s} {sec:8.3f} {cpu:8.3f}")


if __name__ == "__main__":
    main()
