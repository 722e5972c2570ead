"""Build and read times of the MIRFlickr TFDS builds against the raw reader, on the real files.

    python bench/tfds_read.py [--data_dir ../shared/data/mirflickr25k] [--repeats 5]

Prints one table: median seconds over the repeats and the ratio to the raw-reader baseline
(udsph_tf.data.load_dataset("mirflickr730")) measured in the same process.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from timing import median_seconds  # noqa: E402  (bench/timing.py)
warnings.filterwarnings("ignore", message=".*cannot hold the standard")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k"
    parser.add_argument("--data_dir", default=str(default))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (pathlib.Path(args.data_dir) / "mirflickr730-efficientnet-lite0.npz").exists():
        sys.exit(f"real MIRFlickr files not found in {args.data_dir}")

    import tensorflow_datasets as tfds  # noqa: F401  (import cost kept out of the timings)
    from udsph_tf.data.readers import load_dataset
    from udsph_tf.data import tfds as udsph_tfds

    rows = []
    with tempfile.TemporaryDirectory() as out:
        for cfg in ("lite0_730", "photos_available"):
            start = time.perf_counter()
            udsph_tfds.build_dataset("mirflickr", cfg, args.data_dir, out)
            rows.append((f"build {cfg} (once)", time.perf_counter() - start, None))
        base = median_seconds(lambda: load_dataset("mirflickr730", args.data_dir), args.repeats)
        rows.insert(0, ("raw load_dataset('mirflickr730') [baseline]", base, 1.0))
        t = median_seconds(lambda: udsph_tfds.load_tfds_as_crossmodal(
            "mirflickr730", out, "lite0_730"), args.repeats)
        rows.append(("tfds load lite0_730 (730 x 1280 features)", t, t / base))
        t = median_seconds(lambda: udsph_tfds.load_tfds_as_crossmodal(
            "mirflickr", out, "photos_available", image_size=224), args.repeats)
        rows.append(("tfds load photos_available, decode+resize 224", t, t / base))

    print(f"{'what':52s} {'median s':>9s} {'x baseline':>11s}   (repeats={args.repeats})")
    for what, sec, ratio in rows:
        print(f"{what:52s} {sec:9.3f} {'' if ratio is None else f'{ratio:10.1f}x':>11s}")


if __name__ == "__main__":
    main()
