"""Write the small fake release files the TFDS builder tests read (generated, never committed).

    python tools/make_tfds_dummy_data.py --out /tmp/dummy_data   # the tests call write_all()

They carry the real releases' file names, so they are made at test time rather than committed
(a committed copy would look like a copy of ../shared/data).

Deterministic (fixed seeds), so rerunning it gives the same arrays. The layouts follow the real
releases (MATLAB v5 and v7.3 files, id/text lists, photo folders, COCO JSON) at a few dozen rows.
"""

import argparse
import io
import json
import pathlib
import shutil

import h5py
import numpy as np
import scipy.io
from PIL import Image

MIR_ROWS = 30
NUS_ROWS = 30
NUS_ORIGINAL_ROWS = 36


def write_mat73(path, key, array):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 after a 512-byte header, axes reversed."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: dummy data HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset(key, data=np.ascontiguousarray(np.asarray(array).transpose()))
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))


def labels_matrix(rng, n, c, mean=2.5):
    lab = (rng.random((n, c)) < mean / c).astype(np.uint8)
    lab[np.arange(n), rng.integers(0, c, n)] = 1  # no empty rows, as in the cleaned releases
    return lab


def tags_matrix(rng, n, d, per_row=6):
    tags = np.zeros((n, d), np.uint8)
    for i in range(n):
        tags[i, rng.choice(d, per_row, replace=False)] = 1
    return tags


def sparse_features(rng, n, d):
    """Mostly zero (ReLU-like), so the compressed dummy files stay small."""
    f = rng.random((n, d)).astype(np.float32)
    f[rng.random((n, d)) < 0.97] = 0
    return f


def photo(rng, size=(12, 10)):
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=60)
    return buf.getvalue()


def pseudo_word(k):
    letters = "bcdfghjklmnpqrstvwxz"
    out = ""
    k += 400  # at least three letters
    while k:
        k, r = divmod(k, len(letters))
        out += letters[r] + "aeiou"[r % 5]
    return out


def make_mirflickr(out: pathlib.Path):
    rng = np.random.default_rng(25)
    n = MIR_ROWS
    labels, tags = labels_matrix(rng, n, 24), tags_matrix(rng, n, 1386)
    scipy.io.savemat(out / "mirflickr25k-lall.mat", {"LAll": labels.astype(np.float64)})
    scipy.io.savemat(out / "mirflickr25k-yall.mat", {"YAll": tags.astype(np.float64)},
                     do_compression=True)
    # DCMH's IAll: MATLAB 224 x 224 x 3 x N (here 16 x 16); h5py then shows (N, 3, 16, 16).
    pixels = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    write_mat73(out / "mirflickr25k-iall.mat", "IAll", pixels.transpose(1, 2, 3, 0))
    np.save(out / "expected_iall_rows.npy", pixels)  # what the builder must decode, row by row
    scipy.io.savemat(out / "mirflickr25k-iall-vgg.mat", {"XAll": sparse_features(rng, n, 4096)},
                     do_compression=True)
    photo_ids = np.sort(rng.choice(np.arange(1, 200), n, replace=False))
    vocab = [f"tag{j:04d}" for j in range(1386)]
    (out / "img_database.txt").write_text("".join(f"images/im{i}.jpg\n" for i in photo_ids))
    (out / "txt_database.txt").write_text("".join(
        " ".join([vocab[j] for j in np.nonzero(tags[i])[0]] + ["rawonly"]) + " \n"
        for i in range(n)))
    (out / "common_tags.txt").write_text("".join(f"{t} {1386 - j}\n" for j, t in enumerate(vocab)))
    (out / "images").mkdir()
    for i in photo_ids:
        (out / "images" / f"im{i}.jpg").write_bytes(photo(rng))
    # The mirflickr730-style subset: features of some rows plus a fixed split file.
    rows = np.sort(rng.choice(n, 12, replace=False))
    np.savez_compressed(out / "mirflickr730-efficientnet-lite0.npz",
                        image_id=photo_ids[rows].astype(np.int64),
                        row_in_20015=rows.astype(np.int64),
                        feat_lite0_1280=sparse_features(rng, len(rows), 1280),
                        LAll=labels[rows], YAll=tags[rows])
    perm = np.random.default_rng(730).permutation(len(rows))
    np.savez(out / "mirflickr730-split.npz", query_idx=np.sort(perm[:3]),
             database_idx=np.sort(perm[3:]), train_idx=np.sort(perm[3:9]), seed=np.int64(730))


def make_nuswide(out: pathlib.Path):
    rng = np.random.default_rng(21)
    n = NUS_ROWS
    for k in (21, 10):
        scipy.io.savemat(out / f"nus-wide-tc{k}-lall.mat",
                         {"LAll": labels_matrix(rng, n, k).astype(np.float64)})
        scipy.io.savemat(out / f"nus-wide-tc{k}-yall.mat",
                         {"YAll": tags_matrix(rng, n, 1000).astype(np.float64)},
                         do_compression=True)
        pixels = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        write_mat73(out / f"nus-wide-tc{k}-iall.mat", "IAll", pixels.transpose(1, 2, 3, 0))
    scipy.io.savemat(out / "nus-wide-tc10-xall-vgg.mat", {"XAll": sparse_features(rng, n, 4096)},
                     do_compression=True)

    # The original distribution: 81 concepts, per-concept 0/1 files, the 1k tag matrix.
    m = NUS_ORIGINAL_ROWS
    concepts = [f"concept{j:02d}" for j in range(81)]
    freq = np.linspace(0.6, 0.01, 81)           # concept j is less frequent than j-1
    all_labels = (rng.random((m, 81)) < freq).astype(np.uint8)
    all_labels[:3] = 0                           # rows with no label at all: dropped
    all_labels[3:6, 30:] = (rng.random((3, 51)) < 0.5)
    all_labels[3:6, :30] = 0                     # rows with only rare labels: dropped by top-k
    tags = tags_matrix(rng, m, 1000, per_row=4)
    tags[6:8] = 0                                # rows with no tag: dropped
    (out / "Concepts81.txt").write_text("".join(c + "\n" for c in concepts))
    gt = out / "Groundtruth" / "AllLabels"
    gt.mkdir(parents=True)
    for j, c in enumerate(concepts):
        (gt / f"Labels_{c}.txt").write_text("".join(f"{v}\n" for v in all_labels[:, j]))
    tagdir = out / "NUS_WID_Tags"
    tagdir.mkdir()
    (tagdir / "AllTags1k.txt").write_text("".join(
        "\t".join(str(v) for v in row) + "\n" for row in tags))
    vocab = [f"nustag{j:04d}" for j in range(1000)]
    (tagdir / "TagList1k.txt").write_text("".join(t + "\n" for t in vocab))
    photo_ids = rng.choice(np.arange(10 ** 9, 2 * 10 ** 9), m, replace=False)
    (tagdir / "All_Tags.txt").write_text("".join(
        f"{pid}      " + " ".join(vocab[j] for j in np.nonzero(tags[i])[0]) + " raw\n"
        for i, pid in enumerate(photo_ids)))
    (out / "ImageList").mkdir()
    names = [f"{concepts[int(np.argmax(all_labels[i]))]}\\{i:04d}_{pid}.jpg"
             for i, pid in enumerate(photo_ids)]
    (out / "ImageList" / "Imagelist.txt").write_text("".join(
        f"C:\\ImageData\\Flickr\\{nm}\n" for nm in names))
    for nm in names:
        folder, fname = nm.split("\\")
        (out / "Flickr" / folder).mkdir(parents=True, exist_ok=True)
        (out / "Flickr" / folder / fname).write_bytes(photo(rng, (9, 7)))


def make_coco(out: pathlib.Path):
    rng = np.random.default_rng(80)
    categories = [{"id": int(cid), "name": f"category{cid}", "supercategory": "thing"}
                  for cid in sorted(rng.choice(np.arange(1, 91), 80, replace=False))]
    next_word = [0]

    def caption():
        # Mostly fresh pseudo-words (the 2000-word vocabulary needs that many), plus stop
        # words and shared words so document frequencies differ.
        words = [pseudo_word(next_word[0] + j) for j in range(22)]
        next_word[0] += 22
        return "A " + " ".join(words) + " of the dog near a red sofa."

    (out / "annotations").mkdir()
    ann_id = 1
    for part, n_images in (("train", 12), ("val", 8)):
        images, inst, caps = [], [], []
        for k in range(n_images):
            image_id = int(rng.integers(1, 600000))
            name = f"COCO_{part}2014_{image_id:012d}.jpg"
            images.append({"id": image_id, "file_name": name, "width": 9, "height": 7})
            (out / f"{part}2014").mkdir(exist_ok=True)
            (out / f"{part}2014" / name).write_bytes(photo(rng, (9, 7)))
            unlabelled = part == "val" and k == 0  # an image without objects: dropped
            for c in ([] if unlabelled else rng.choice(80, int(rng.integers(1, 4)),
                                                       replace=False)):
                inst.append({"id": ann_id, "image_id": image_id,
                             "category_id": int(categories[c]["id"]),
                             "bbox": [0, 0, 1, 1], "area": 1.0, "iscrowd": 0})
                ann_id += 1
            for _ in range(5):
                caps.append({"id": ann_id, "image_id": image_id, "caption": caption()})
                ann_id += 1
        info = {"description": "udsph-tf dummy data"}
        (out / "annotations" / f"instances_{part}2014.json").write_text(json.dumps(
            {"info": info, "images": images, "annotations": inst, "categories": categories}))
        (out / "annotations" / f"captions_{part}2014.json").write_text(json.dumps(
            {"info": info, "images": images, "annotations": caps}))


def write_all(root):
    """Write the three fake releases under `root` (one folder per builder); returns `root`."""
    root = pathlib.Path(root)
    for name, fn in (("mirflickr25k", make_mirflickr), ("nus_wide", make_nuswide),
                     ("coco_multilabel", make_coco)):
        out = root / name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        fn(out)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"{out}: {sum(1 for p in out.rglob('*') if p.is_file())} files, {size / 1e3:.0f} kB")
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    write_all(parser.parse_args().out)


if __name__ == "__main__":
    main()
