"""Build one TFDS config of mirflickr / mirflickr730 / nuswide / coco from manually downloaded
files.

    python tools/build_tfds.py --dataset=mirflickr730 --manual_dir=../shared/data/mirflickr25k \
        --data_dir=~/tensorflow_datasets
    python tools/build_tfds.py --dataset=mirflickr --config=vgg --split_seed=3 --manual_dir=DIR \
        --data_dir=DIR
    python tools/build_tfds.py --dataset=mirflickr --list      # configs and their files

Then train from it: python main.py --dataset=mirflickr --data_source=tfds --tfds_data_dir=DIR
"""

import argparse
import os
import pathlib
import sys
import time

# Runnable from a checkout without installing the package (as main.py is).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True,
                        help="mirflickr, mirflickr730, nuswide, coco (or a builder name)")
    parser.add_argument("--config", default="", help="builder config; empty = the default one")
    parser.add_argument("--manual_dir", default="", help="folder with the downloaded files")
    parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
    parser.add_argument("--split_seed", type=int, default=None,
                        help="another split seed (the config is copied as <config>_seed<N>)")
    parser.add_argument("--num_query", type=int, default=-1)
    parser.add_argument("--num_train", type=int, default=-1)
    parser.add_argument("--num_val", type=int, default=-1)
    parser.add_argument("--list", action="store_true", help="print the configs and exit")
    args = parser.parse_args()

    import tensorflow_datasets as tfds
    from udsph_tf.data import tfds as udsph_tfds
    builder_name = udsph_tfds.BUILDERS.get(args.dataset, (args.dataset, ""))[0]
    cls = tfds.builder_cls(builder_name)
    if args.list:
        print(cls.MANUAL_DOWNLOAD_INSTRUCTIONS)
        for name, cfg in cls.builder_configs.items():
            print(f"  {name:26s} {cfg.description}")
        return
    if not args.manual_dir:
        parser.error("--manual_dir is required (see --list for the files it must hold)")
    start = time.perf_counter()
    builder = udsph_tfds.build_dataset(
        args.dataset, args.config, args.manual_dir, args.data_dir, split_seed=args.split_seed,
        num_query=args.num_query, num_train=args.num_train, num_val=args.num_val)
    sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
    print(f"built {builder_name}/{builder.builder_config.name} in {builder.data_dir} "
          f"({time.perf_counter() - start:.1f} s): {sizes}")


if __name__ == "__main__":
    main()
