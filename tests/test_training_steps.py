"""The distributed steps: replica equivalence, gradient routing, buffer updates, loss scaling."""

import numpy as np
import pytest
import tensorflow as tf

from udsph_tf.errors import ConfigError
from udsph_tf.training.schedule import data_seed, epoch_phases, learning_rate
from udsph_tf.training.steps import scale_to_global
from udsph_tf.training.testing import (shared_strategy, tiny_config, tiny_data, tiny_region_data,
                                      tiny_split)
from udsph_tf.modes.train import make_trainer

GLOBAL_BATCH = 16


def _cpus():
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def _needs_two_devices():
    if len(_cpus()) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py sets them up)")


def _trainer(tmp_path, devices, fill=True, **changes):
    config = tiny_config(tmp_path, batch_size=GLOBAL_BATCH, **changes)
    strategy = shared_strategy(len(devices))
    trainer = make_trainer(config, strategy=strategy, data=tiny_data(), split=tiny_split()).task
    if fill:
        trainer.fill_buffers()
    return trainer


def _batch(trainer, rows):
    d = trainer.train_data
    return {"images": d.images[rows], "tags": d.tags[rows].astype(np.float32),
            "labels": d.labels[rows], "index": rows.astype(np.int64)}


def _distribute(strategy, batch):
    n = strategy.num_replicas_in_sync
    per = len(batch["index"]) // n

    def value_fn(ctx):
        i = ctx.replica_id_in_sync_group
        return {k: tf.constant(v[i * per:(i + 1) * per]) for k, v in batch.items()}

    return strategy.experimental_distribute_values_from_function(value_fn)


def _state(trainer):
    out = {}
    for name, model in trainer.models.items():
        if model is not None:
            for v in model.weights:
                out[f"{name}/{v.path}"] = v.numpy()
    for name, v in trainer.buffers.items():
        out[f"buffer/{name}"] = v.numpy()
    return out


@pytest.mark.parametrize("variant", [
    {}, pytest.param({"attention": "none"}, marks=pytest.mark.slow),
    pytest.param({"label_net": False, "adversarial": False}, marks=pytest.mark.slow),
    {"fused_adam": True}])
def test_two_replicas_match_one_device(tmp_path, variant):
    _needs_two_devices()
    one = _trainer(tmp_path / "one", _cpus()[:1], fill=False, **variant)
    two = _trainer(tmp_path / "two", _cpus()[:2], fill=False, **variant)
    # Same initial weights in both (set explicitly, not left to the seed).
    for name, model in one.models.items():
        if model is not None:
            two.models[name].set_weights(model.get_weights())
    one.fill_buffers()
    two.fill_buffers()  # again: from the copied weights
    initial = _state(one)
    rows = np.random.default_rng(1).permutation(one.n_train)[:GLOBAL_BATCH]
    batch = _batch(one, rows)
    for net in one.networks:
        logs1 = one.steps.step(net)(_distribute(one.strategy, batch))
        logs2 = two.steps.step(net)(_distribute(two.strategy, batch))
        for k in logs1:
            np.testing.assert_allclose(float(logs1[k]), float(logs2[k]), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{net} logged {k}")
    s1, s2 = _state(one), _state(two)
    assert s1.keys() == s2.keys()
    for k in s1:
        # Adam's first step is lr * g / (|g| + eps): for a near-zero gradient entry float
        # rounding between the two reduction orders moves it by up to ~lr, hence atol 0.1 * lr.
        np.testing.assert_allclose(s1[k], s2[k], rtol=1e-4, atol=1e-4, err_msg=k)
    # The steps did something: every active network moved (not two untouched models).
    for net in one.networks:
        prefixes = ("disc_img/", "disc_txt/") if net == "disc" else (f"{net}/",)
        assert any(not np.array_equal(initial[k], s1[k]) for k in s1 if k.startswith(prefixes)), net


def test_generator_gradient_reaches_only_modality_network(tmp_path):
    t = _trainer(tmp_path, _cpus()[:1], attention="none")
    from udsph_tf import losses as L
    rows = np.arange(GLOBAL_BATCH)
    b = _batch(t, rows)
    for net, x, disc in (("imgnet", b["images"], "disc_img"), ("txtnet", b["tags"], "disc_txt")):
        with tf.GradientTape(persistent=True) as tape:
            out = t.models[net](tf.constant(x), training=True)
            adv = tf.reduce_mean(L.generator_adversarial(t.models[disc](out["feature"])))
        g_net = tape.gradient(adv, t.models[net].trainable_variables)
        assert any(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in g_net), net
    # And the modality step leaves the discriminators (and LabNet) untouched.
    before = {k: v for k, v in _state(t).items() if k.startswith(("disc_", "labnet/"))}
    for net in ("imgnet", "txtnet"):
        t.steps.step(net)(_distribute(t.strategy, b))
    after = _state(t)
    for k, v in before.items():
        np.testing.assert_array_equal(v, after[k], err_msg=f"{k} changed in a modality step")


def test_modality_step_adversarial_term_changes_imgnet_update(tmp_path):
    """delta (adversarial weight) changes ImgNet's update: the gradient really flows there."""
    rows = np.arange(GLOBAL_BATCH)
    results = []
    for delta in (0.0, 10.0):
        t = _trainer(tmp_path / f"d{delta}", _cpus()[:1], delta=delta, attention="none")
        if results:
            for name, model in t.models.items():
                if model is not None:
                    model.set_weights(results[0][1][name])
            t.fill_buffers()
        init = {n: m.get_weights() for n, m in t.models.items() if m is not None}
        t.steps.step("imgnet")(_distribute(t.strategy, _batch(t, rows)))
        results.append((t.models["imgnet"].get_weights(), init))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(results[0][0], results[1][0]))
    assert diff > 1e-7


def test_buffers_updated_at_batch_rows_only(tmp_path):
    t = _trainer(tmp_path, _cpus()[:1])
    t.buffers["lab_H"].assign(np.full(t.buffers["lab_H"].shape, 7.0, np.float32))
    before = t.buffers["lab_H"].numpy().copy()
    rows = np.arange(3, 3 + GLOBAL_BATCH)
    # The step writes the outputs it computed, i.e. those of the network before its update.
    expected = t.models["labnet"](tf.constant(t.train_data.labels[rows], tf.float32))["hash"]
    t.steps.step("labnet")(_distribute(t.strategy, _batch(t, rows)))
    after = t.buffers["lab_H"].numpy()
    others = np.setdiff1d(np.arange(t.n_train), rows)
    np.testing.assert_array_equal(before[others], after[others])
    np.testing.assert_allclose(after[rows], expected.numpy(), rtol=1e-5, atol=1e-6)


def test_scale_to_global_divides_by_global_batch():
    per_anchor = tf.constant([1.0, 2.0, 3.0, 4.0])
    assert float(scale_to_global(per_anchor, 8)) == pytest.approx(10.0 / 8)


def test_schedule_order_rates_and_seeds(tmp_path):
    c = tiny_config(tmp_path, lab_passes=2, disc_passes=1, img_passes=1, txt_passes=3,
                    lr_img=1e-2, lr_decay=0.5)
    assert [p.network for p in epoch_phases(c)] == ["labnet", "labnet", "disc", "imgnet",
                                                    "txtnet", "txtnet", "txtnet"]
    assert learning_rate(c, "imgnet", 2) == pytest.approx(2.5e-3)
    dcmh = tiny_config(tmp_path, label_net=False, adversarial=False)
    assert [p.network for p in epoch_phases(dcmh)] == ["imgnet", "txtnet"]
    with pytest.raises(ValueError, match="adversarial"):
        epoch_phases(tiny_config(tmp_path, label_net=False, adversarial=True))
    with pytest.raises(ConfigError, match="--img_passes: imgnet passes must be >= 0"):
        epoch_phases(tiny_config(tmp_path, img_passes=-1))
    assert data_seed(0, 1, 2) == data_seed(0, 1, 2) != data_seed(0, 2, 2)


@pytest.mark.parametrize("replicas,min_pass_steps", [(1, 0), (1, 7), (2, 7)])
def test_schedule_dataset_gives_each_pass_the_batches_of_its_own_dataset(tmp_path, replicas,
                                                                          min_pass_steps):
    """The trainer's one pipeline for many passes replays, pass by pass, the batches of one
    pipeline a pass (min_pass_steps=7 cycles the 4 full batches of the 64 training rows)."""
    if replicas > 1:
        _needs_two_devices()
    trainer = _trainer(tmp_path, _cpus()[:replicas], fill=False, min_pass_steps=min_pass_steps)
    seeds = [data_seed(3, epoch, k) for epoch in range(2) for k in range(3)]

    def rows(iterator, count):
        local = trainer.strategy.experimental_local_results
        return [np.concatenate([np.asarray(t) for t in local(next(iterator)["index"])])
                for _ in range(count)]

    steps = trainer.steps_per_pass
    assert steps == max(4, min_pass_steps)
    joined = rows(iter(trainer.schedule_dataset(seeds)), len(seeds) * steps)
    one_by_one = [r for seed in seeds for r in rows(iter(trainer.dataset(seed)), steps)]
    assert len(joined) == len(one_by_one) == len(seeds) * steps
    for a, b in zip(joined, one_by_one):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(joined[0], joined[steps])  # the passes are shuffled apart


def test_initial_weights_do_not_depend_on_what_loading_drew(tmp_path, monkeypatch):
    """A first MIRFlickr-730 region run builds a backbone while loading (later ones read the
    cache): the networks must start from the same weights either way."""
    import keras
    import udsph_tf.modes.train as train_mode

    def weights(workdir):
        task = make_trainer(tiny_config(workdir), strategy=shared_strategy(1),
                            data=tiny_data(), split=tiny_split()).task
        # By position: Keras numbers unnamed layers per process, so paths differ by run.
        return {f"{name}/{i}": v.numpy() for name, model in task.models.items()
                if model is not None for i, v in enumerate(model.weights)}

    plain = weights(tmp_path / "plain")
    loading = train_mode.prepare_data

    def drawing_loader(*args, **kwargs):
        keras.layers.Dense(4).build((None, 3))       # a network built while loading
        tf.random.uniform([3])
        np.random.rand()
        return loading(*args, **kwargs)

    monkeypatch.setattr(train_mode, "prepare_data", drawing_loader)
    drawn = weights(tmp_path / "drawn")
    assert plain.keys() == drawn.keys() and len(plain) > 10
    for key in plain:
        np.testing.assert_array_equal(plain[key], drawn[key], err_msg=key)


def test_bad_batch_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="exceeds"):
        make_trainer(tiny_config(tmp_path, batch_size=1000), data=tiny_data(), split=tiny_split())


def test_disc_schedule_step_trains_that_modality_discriminator_in_its_step(tmp_path):
    """--disc_schedule=step: an ImgNet step also steps disc_img on the batch (disc_txt kept);
    with the default (epoch) a modality step leaves both discriminators as they were."""
    rows = np.arange(GLOBAL_BATCH)
    for schedule, img_changes in (("step", True), ("epoch", False)):
        t = _trainer(tmp_path / schedule, _cpus()[:1], disc_schedule=schedule, attention="none")
        before = {n: [w.copy() for w in t.models[n].get_weights()]
                  for n in ("disc_img", "disc_txt")}
        logs = t.steps.step("imgnet")(_distribute(t.strategy, _batch(t, rows)))
        changed = {n: any(np.any(a != b) for a, b in zip(before[n], t.models[n].get_weights()))
                   for n in before}
        assert changed == {"disc_img": img_changes, "disc_txt": False}, schedule
        assert ("disc_img" in logs) == img_changes
        if img_changes:
            assert np.isfinite(float(logs["disc_img"])) and float(logs["disc_img"]) > 0


def test_attention_step_on_regions_trains_the_region_and_word_projections(tmp_path):
    # Region features (R = 4 cells + the global row, as --region_grid gives them): the image
    # step moves ImgNet's region projection and the text step TxtNet's word projection.
    data = tiny_region_data(grid=2)
    config = tiny_config(tmp_path, batch_size=GLOBAL_BATCH, region_grid=2, adversarial=False)
    task = make_trainer(config, strategy=shared_strategy(1), data=data,
                        split=tiny_split()).task
    task.fill_buffers()
    assert task.models["imgnet"].image_input.num_regions == 4
    rows = np.arange(GLOBAL_BATCH)
    batch = _batch(task, rows)
    for net, layer in (("imgnet", "region_proj"), ("txtnet", "token_proj")):
        model = task.models[net]
        before = {v.path: v.numpy() for v in model.trainable_variables if layer in v.path}
        assert before, f"{net} has no {layer}"
        logs = task.steps.step(net)(_distribute(task.strategy, batch))
        assert all(np.isfinite(float(v)) for v in logs.values())
        after = {v.path: v.numpy() for v in model.trainable_variables if layer in v.path}
        assert any(not np.array_equal(before[k], after[k]) for k in before), (net, layer)


def test_tag_dropout_steps_on_two_replicas(tmp_path):
    """The random tag mask is drawn per replica inside strategy.run (its seed state is a
    Keras variable): the TxtNet step runs and trains there."""
    _needs_two_devices()
    two = _trainer(tmp_path, _cpus()[:2], tag_dropout=0.5)
    before = [w.numpy() for w in two.models["txtnet"].trainable_weights]
    rows = np.random.default_rng(1).permutation(two.n_train)[:GLOBAL_BATCH]
    logs = two.steps.step("txtnet")(_distribute(two.strategy, _batch(two, rows)))
    assert np.isfinite(float(logs["total"]))
    after = [w.numpy() for w in two.models["txtnet"].trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_per_bit_hash_theta_reaches_the_labnet_step(tmp_path):
    """--hash_theta=per_bit: the step's logged code likelihood is the one of Theta = 16/K h.h'
    against the buffer (K = 8 here, so 2 h.h' instead of 0.5 h.h')."""
    from udsph_tf import losses as L
    rows = np.arange(GLOBAL_BATCH)
    t = _trainer(tmp_path, _cpus()[:1], hash_theta="per_bit", attention="none")
    assert t.steps.hash_scale == 16.0 / 8
    labels = tf.constant(t.train_data.labels[rows], tf.float32)
    h = t.models["labnet"](labels, training=True)["hash"]
    s = L.similarity(labels, t.steps.train_labels)
    buf = t.buffers["lab_H"].numpy()
    logs = t.steps.step("labnet")(_distribute(t.strategy, _batch(t, rows)))
    for scale, same in ((2.0, True), (0.5, False)):
        expected = float(tf.reduce_mean(L.pairwise_nll(h, buf, s, scale=scale)))
        assert np.isclose(float(logs["hash_pair"]), expected, rtol=1e-4) == same, scale


@pytest.mark.parametrize("to", ["both", "txt", "img"])
def test_cross_pair_to_names_the_students_the_image_text_term_teaches(tmp_path, to):
    """--cross_pair_to: a student it names logs the term, the code likelihood of its batch
    against the OTHER modality's code buffer; the other student has no such term."""
    from udsph_tf import losses as L
    rows = np.arange(GLOBAL_BATCH)
    t = _trainer(tmp_path, _cpus()[:1], cross_pair=2.0, cross_pair_to=to, attention="none")
    labels = tf.constant(t.train_data.labels[rows], tf.float32)
    s = L.similarity(labels, t.steps.train_labels)
    batch = _batch(t, rows)
    inputs = {"img": tf.constant(batch["images"], tf.float32), "txt": tf.constant(batch["tags"])}
    for modality, other in (("img", "txt"), ("txt", "img")):
        net = f"{modality}net"
        h = t.models[net](inputs[modality], training=True)["hash"]
        expected = float(tf.reduce_mean(L.pairwise_nll(h, t.buffers[f"{other}_H"].numpy(), s)))
        logs = t.steps.step(net)(_distribute(t.strategy, batch))
        if to in ("both", modality):
            assert np.isclose(float(logs["cross_pair"]), expected, rtol=1e-4), (to, modality)
        else:
            assert "cross_pair" not in logs, (to, modality)
