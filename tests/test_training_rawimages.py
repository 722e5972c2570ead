"""Raw-image training: photos decoded once, frozen-backbone cache = backbone each step,
fine-tuning."""

import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from udsph_tf.data.types import CrossModalData
from udsph_tf.data import raw_images
from udsph_tf.modes import train as train_mode
from udsph_tf.modes.train import make_trainer, prepare_raw_images, train_and_test
from udsph_tf.training.testing import shared_strategy, tiny_config, tiny_split

SIZE = (64, 64)  # EfficientNet-Lite0 at 64x64: a 2x2 grid = 4 regions of 1280
N = 40


def _photos(folder, n=N, seed=0):
    """PNG photos whose colour depends on the labels, plus tags and labels that match."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 3), np.uint8)
    labels[np.arange(n), rng.integers(0, 3, n)] = 1
    paths = []
    colours = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]], np.float32)
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        base = colours[labels[i].argmax()]
        pixels = np.clip(base + rng.normal(0, 40, (48 + i % 5, 72, 3)), 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"im{i + 1}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    tags = np.concatenate([labels, rng.random((n, 9)) < 0.1], 1).astype(np.float32)
    return CrossModalData(name="photos", images=None, tags=tags, labels=labels,
                          ids=np.arange(n), image_paths=paths)


def _config(workdir, **changes):
    return tiny_config(workdir, backbone="efficientnet_lite0", epochs=1, batch_size=8,
                       **changes)


def _trainer(tmp_path, name, **changes):
    data = _photos(tmp_path / "photos")
    return make_trainer(_config(tmp_path / name, **changes), strategy=shared_strategy(1),
                        data=data, split=tiny_split(N, num_query=8, num_val=8), image_size=SIZE)


def _backbone_weights(trainer):
    # The backbone is the `net` of ImgNet's BackboneInput (not present in cached mode).
    return [w.numpy().copy() for w in trainer.task.models["imgnet"].image_input.net.weights]


@pytest.mark.slow  # ~25 s on the shared 2 cores: two Lite0 builds
def test_frozen_cache_gives_what_the_backbone_gives_each_step(tmp_path, monkeypatch):
    cached = _trainer(tmp_path, "cached")
    # 4 regions + the global vector
    assert cached.task.raw.cached and cached.task.data.images.shape == (N, 5, 1280)
    monkeypatch.setattr(train_mode, "can_cache", lambda config: False)
    live = _trainer(tmp_path, "live")
    assert not live.task.raw.cached and live.task.data.images.dtype == np.uint8
    assert live.task.data.images.shape == (N, *SIZE, 3)
    # Same head weights in both ImgNets, then the same outputs on the same photos.
    # (region_proj: ImgNet's projection of the regions into the attention's space.)
    for layer in ("hidden", "feature", "heads", "region_proj"):
        getattr(live.task.models["imgnet"], layer).set_weights(
            getattr(cached.task.models["imgnet"], layer).get_weights())
    pixels = live.task.raw.transform()(live.task.data.images[:16])
    want = live.task.models["imgnet"](pixels, training=False)
    got = cached.task.models["imgnet"](cached.task.data.images[:16], training=False)
    for key in ("feature", "hash", "regions"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-4, atol=1e-5)
    # And through the trainer: the encoding used by buffers/evaluation agrees too.
    hv_live, _ = live.task.encode(np.arange(N))
    hv_cached, _ = cached.task.encode(np.arange(N))
    assert hv_live.shape == hv_cached.shape == (N, 8)
    np.testing.assert_allclose(hv_live, hv_cached, rtol=1e-4, atol=1e-5)
    # Frozen: no step trains a backbone weight (a live frozen run, e.g. --augment without
    # --fine_tune, steps what train_variables lists; the fine-tuned run below is the one
    # whose backbone must move).
    backbone = {id(w) for w in live.task.models["imgnet"].image_input.net.weights}
    assert backbone
    for network in ("labnet", "disc", "imgnet", "txtnet"):
        assert not backbone & {id(v) for v in live.task.steps.train_variables(network)}


@pytest.mark.slow  # ~40 s: two 1-epoch runs, one fine-tuning Lite0
def test_frozen_and_fine_tuned_runs_end_to_end(tmp_path):
    frozen = _trainer(tmp_path, "frozen", refit=True)  # the refit reuses the cached outputs
    m = train_and_test(frozen)
    saved = json.loads((tmp_path / "frozen" / "metrics.json").read_text())
    assert saved["test"]["map_i2t"] == pytest.approx(m["test"]["map_i2t"])
    assert m["test"]["model"] == "refit" and m["refit"]["train_rows"] == N - 8
    assert 0.0 < m["test"]["map_i2t"] <= 1.0 and 0.0 < m["test"]["map_t2i"] <= 1.0

    tuned = _trainer(tmp_path, "tuned", fine_tune=True, augment=True)  # augmented batches too
    assert not tuned.task.raw.cached
    before = _backbone_weights(tuned)
    m = train_and_test(tuned)
    assert (tmp_path / "tuned" / "metrics.json").exists()
    after = _backbone_weights(tuned)
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert any(changed), "fine-tuning left every backbone weight unchanged"
    # Batch norms stay frozen while fine-tuning (their moving statistics never move).
    bn = [w for w in tuned.task.models["imgnet"].image_input.net.weights if "moving" in w.path]
    assert bn and not any(changed[i] for i, w in enumerate(
        tuned.task.models["imgnet"].image_input.net.weights) if "moving" in w.path)


def test_augmentation_is_stateless_and_only_for_training(tmp_path):
    data = _photos(tmp_path / "photos", n=4)
    spec = raw_images.image_io.ImageSpec(height=64, width=64, mean=(127.0,) * 3,
                                         std=(128.0,) * 3)
    pixels = raw_images.decode_pixels(data.image_paths, spec, progress=False)
    raw = raw_images.RawImageInput(images=pixels, cached=False, kept=np.arange(4), spec=spec)
    seeds = tf.constant([[1, 0], [1, 1], [1, 2], [1, 3]], tf.int64)
    a = raw.transform(augment=True)(pixels, seeds).numpy()
    b = raw.transform(augment=True)(pixels, seeds).numpy()
    c = raw.transform(augment=True)(pixels, seeds + [1, 0]).numpy()
    plain = raw.transform(augment=False)(pixels).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape == plain.shape == (4, 64, 64, 3)
    assert not np.allclose(a, c) and not np.allclose(a, plain)
    np.testing.assert_allclose(plain, (pixels.astype(np.float32) - 127.0) / 128.0)


def test_bad_photo_is_named_or_skipped_with_the_split_remapped(tmp_path):
    data = _photos(tmp_path / "photos", n=12)
    with open(data.image_paths[3], "wb") as f:
        f.write(b"not an image")
    os.remove(data.image_paths[5])
    split = tiny_split(12, num_query=4, num_val=2)
    config = _config(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="im6.png: missing"):
        prepare_raw_images(config, data, split, SIZE, progress=False)
    os.remove(data.image_paths[3])  # leave only the corrupt one: a decode error, named
    with open(data.image_paths[3], "wb") as f:
        f.write(b"not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data.image_paths[5])
    with pytest.raises(ValueError, match=r"im4\.png"):
        prepare_raw_images(config, data, split, SIZE, progress=False)
    os.remove(data.image_paths[5])
    skip = _config(tmp_path / "w", skip_bad_images=True)
    new, new_split, raw = prepare_raw_images(skip, data, split, SIZE, progress=False)
    assert list(raw.kept) == [i for i in range(12) if i not in (3, 5)]
    assert len(new) == 10 and new.images.shape[0] == 10
    old_rows = {int(r) for r in split.query_idx} - {3, 5}
    assert {int(raw.kept[i]) for i in new_split.query_idx} == old_rows
    new_split.check(10)


def test_features_backbone_with_raw_images_is_refused(tmp_path):
    data = _photos(tmp_path / "photos", n=4)
    with pytest.raises(ValueError, match="--backbone=features"):
        prepare_raw_images(tiny_config(tmp_path), data, tiny_split(4, 1, 0),
                                      progress=False)


def test_export_and_search_of_a_raw_image_run_say_how_to_serve_one(tmp_path):
    """Only runs trained on image features are exported/searched; the error says how to get
    one (extract, train on the features) instead of failing deep inside a restore."""
    from udsph_tf import export
    from udsph_tf.config import replace
    from udsph_tf.modes.export import export_from_checkpoint
    from udsph_tf.modes.search import search
    data = _photos(tmp_path / "photos", n=4)
    split = tiny_split(4, 1, 0)
    config = _config(tmp_path / "run")
    with pytest.raises(ValueError, match=r"export needs a run trained on image features.*"
                                         r"--mode=extract.*--image_file=F"):
        export_from_checkpoint(replace(config, mode="export"), data, split)
    with pytest.raises(ValueError, match=r"search needs a run trained on image features"):
        search(replace(config, mode="search", query_tags="a"), data, split)
    with pytest.raises(ValueError, match=r"encoding image codes needs a run trained"):
        export.build_database(types.SimpleNamespace(hash=lambda modality, x: x), data,
                              np.arange(2), "image", "run")
