"""U-Nets on keras.applications backbones: each builds for 1, 3 and 4 channels with its skips
at strides 2-16, trains, saves and loads; weights come from a local file (the offline case)
exactly, and ``"imagenet"`` without a network is one clear error."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from unet_lib.model import (
    ENCODER_STRIDE,
    ENCODERS,
    backbone_layers,
    build_unet,
    load_model,
    save_model,
)
from unet_lib.model.encoders import BN_MOMENTUM, input_adapter
from unet_lib.training.config import ENCODER_NAMES


def test_the_config_offers_exactly_the_encoders_the_model_has():
    assert set(ENCODER_NAMES) == set(ENCODERS)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_each_encoder_builds_with_its_skips_at_strides_2_to_16(name):
    model = build_unet((64, 64, 3), 2, encoder=name, base_filters=4)
    assert model.output_shape == (None, 64, 64, 2)
    spec = ENCODERS[name]
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in
                                       (*spec.skips, spec.bottleneck)])  # fmt: skip
    sizes = [tuple(t.shape[1:3]) for t in probe.outputs]
    assert sizes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)], sizes
    assert model.get_layer("encoder_input").trainable is False
    norms = [
        x for x in backbone_layers(model, name) if isinstance(x, keras.layers.BatchNormalization)
    ]
    assert norms or name == "vgg16"
    assert all(layer.momentum == BN_MOMENTUM == 0.9 for layer in norms)  # Keras: 0.99, 0.999


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_four_channel_inputs(channels):
    model = build_unet((32, 32, channels), 1, encoder="mobilenetv2", base_filters=2)
    assert model.output_shape == (None, 32, 32, 1)
    assert model.get_layer("encoder_input").trainable is (channels == 4)


def test_input_adapter_does_the_backbones_preprocessing():
    x = np.array([[[[0.2, 0.5, 1.0]]]], np.float32)  # one RGB pixel in [0, 1]
    caffe = input_adapter(ENCODERS["resnet50"], 3, pretrained=True)
    # x 255 = (51, 127.5, 255), to BGR, minus the BGR means (103.939, 116.779, 123.68)
    expected = [255 - 103.939, 127.5 - 116.779, 51 - 123.68]
    np.testing.assert_allclose(np.asarray(caffe(x))[0, 0, 0], expected, rtol=1e-5)
    tf_mode = input_adapter(ENCODERS["mobilenetv2"], 3, pretrained=True)
    np.testing.assert_allclose(np.asarray(tf_mode(x))[0, 0, 0], [-0.6, 0.0, 1.0], atol=1e-6)
    grey = input_adapter(ENCODERS["mobilenetv2"], 1, pretrained=False)
    np.testing.assert_allclose(np.asarray(grey(x[..., :1]))[0, 0, 0], [-0.6] * 3, atol=1e-6)
    # EfficientNet with ImageNet weights: what Keras' own graph computes after its
    # normalisation, ((x - mean) / std) / sqrt(std), reached through its x / 255 and (. -
    # mean) / std layers: y = 255 mean (1 - 1/sqrt(std)) + 255 x / sqrt(std)
    eff = input_adapter(ENCODERS["efficientnetb0"], 3, pretrained=True)
    y = np.asarray(eff(x))[0, 0, 0]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose((y / 255 - mean) / std, (x[0, 0, 0] - mean) / std / np.sqrt(std),
                               rtol=1e-5)  # fmt: skip


def test_weights_from_a_local_file_are_loaded_exactly(tmp_path):
    spec = ENCODERS["mobilenetv2"]
    source = spec.build()
    rng = np.random.default_rng(0)
    source.set_weights([rng.normal(size=w.shape).astype("float32") for w in source.weights])
    path = tmp_path / "mobilenetv2.weights.h5"
    source.save_weights(path)
    model = build_unet((32, 32, 3), 1, encoder="mobilenetv2", encoder_weights=str(path))
    ours = [layer for layer in model.layers if layer.name.startswith(("Conv1", "block_"))]
    theirs = {layer.name: layer for layer in source.layers}
    assert ours
    for layer in ours:
        for a, b in zip(layer.get_weights(), theirs[layer.name].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def _write_keras2_h5(path, model) -> None:
    """The layout of the files Keras' server holds (``*_notop.h5``, written by Keras 2): every
    layer a group whose ``weight_names`` list its trainable then non-trainable weights."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            weights = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{w.name}:0".encode() for w in weights]
            group.attrs["weight_names"] = names
            for name, w in zip(names, weights, strict=True):
                group.create_dataset(name, data=np.asarray(w))


def test_the_downloadable_keras2_file_is_loaded_exactly(tmp_path):
    """The file the offline error names is a Keras 2 HDF5 file, not a ``.weights.h5``: a user
    who downloads it and passes its path gets exactly its values."""
    source = ENCODERS["mobilenetv2"].build()
    rng = np.random.default_rng(1)
    source.set_weights([rng.normal(size=w.shape).astype("float32") for w in source.weights])
    path = tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    _write_keras2_h5(path, source)
    model = build_unet((32, 32, 3), 1, encoder="mobilenetv2", encoder_weights=path)
    theirs = {layer.name: layer.get_weights() for layer in source.layers}
    copied = [layer for layer in model.layers if layer.name in theirs and layer.weights]
    assert len(copied) == sum(bool(w) for w in theirs.values())  # every layer of the backbone
    for layer in copied:
        for a, b in zip(layer.get_weights(), theirs[layer.name], strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not hold the vgg16 backbone's weights .* "
                       "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):  # fmt: skip
        build_unet((32, 32, 3), 1, encoder="vgg16", encoder_weights=path)


def test_imagenet_weights_offline_is_one_line_that_says_what_to_do(monkeypatch):
    def offline(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise OSError("URL fetch failure: Temporary failure in name resolution")
        return original(*args, weights=weights, **kwargs)

    original = keras.applications.MobileNetV2
    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(ValueError, match=r"could not be downloaded \(OSError\); download "
                       r"https://.*_no_top\.h5 .* encoder_weights='PATH'"):  # fmt: skip
        build_unet((32, 32, 3), 1, encoder="mobilenetv2", encoder_weights="imagenet")


@pytest.mark.parametrize("bad, match", [
    (dict(encoder="resnet18"), "encoder must be one of"),
    (dict(encoder="vgg16", encoder_weights="nowhere.h5"), "no file at nowhere.h5"),
    (dict(encoder="vgg16", padding="valid"), "padding='same' only"),
])  # fmt: skip
def test_bad_encoder_arguments(bad, match):
    with pytest.raises(ValueError, match=match):
        build_unet((None, None, 3), 1, **bad)


def test_an_encoder_unet_trains_saves_and_loads(tmp_path):
    model = build_unet((None, None, 3), 1, encoder="mobilenetv2", base_filters=4,
                       freeze_encoder=True)  # fmt: skip
    frozen = [layer for layer in model.layers if layer.name.startswith("block_") and layer.weights]
    assert frozen and not any(layer.trainable for layer in frozen)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 64, 64, 3)).astype("float32")
    y = (x[..., :1] > 0.5).astype("float32")
    first = model.train_on_batch(x, y)
    for _ in range(5):
        last = model.train_on_batch(x, y)
    assert last < first
    again = load_model(save_model(model, tmp_path / "m.keras"), compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_prediction_pads_to_the_encoder_stride():
    from unet_lib.inference import predict
    from unet_lib.inference.geometry import model_geometry

    model = build_unet((None, None, 3), 2, encoder="mobilenetv2", base_filters=2)
    assert model_geometry(model).multiple == ENCODER_STRIDE
    image = np.random.default_rng(2).uniform(size=(50, 70, 3)).astype("float32")
    assert predict(model, image).labels.shape == (50, 70)


def test_train_and_the_command_line_take_an_encoder(tmp_path):
    import json

    from unet_lib.cli import build_parser
    from unet_lib.cli.workflow import train_options
    from unet_lib.data.synthetic import make_synthetic_dataset
    from unet_lib.training import train

    data = make_synthetic_dataset(tmp_path / "data", num_images=6, size=64, seed=1)
    result = train(data, tmp_path / "run", epochs=1, encoder="mobilenetv2", batch_size=2,
                   verbose=0)  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["encoder"] == "mobilenetv2" and config["base_filters"] == 16
    assert "mobilenetv2 encoder" in config["plan"]["derived"]["base_filters"]
    assert result.model.get_layer("encoder_input") is not None
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--encoder", "vgg16",
                                      "--encoder-weights", "w.h5", "--freeze-encoder"])  # fmt: skip
    assert {
        k: train_options(args)[k] for k in ("encoder", "encoder_weights", "freeze_encoder")
    } == {"encoder": "vgg16", "encoder_weights": "w.h5", "freeze_encoder": True}


def test_a_frozen_encoder_warm_up_holds_the_backbone_then_trains_it_and_resumes(tmp_path):
    """One frozen epoch, then the backbone trains in the same process (the optimizer must know
    its weights) and a run killed after epoch 2 resumes with all of its optimizer state."""
    from unet_lib.data.synthetic import make_synthetic_dataset
    from unet_lib.training import train

    class Watch(keras.callbacks.Callback):  # the first backbone kernel and a decoder kernel
        def __init__(self):
            super().__init__()
            self.seen = []

        def _record(self):
            self.seen.append([np.array(self.model.get_layer(n).get_weights()[0])
                              for n in ("Conv1", "dec1_conv1")])  # fmt: skip

        def on_train_begin(self, logs=None):
            self._record()

        def on_epoch_end(self, epoch, logs=None):
            self._record()

    class Crash(keras.callbacks.Callback):  # after the second epoch's commit
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("killed")

    data = make_synthetic_dataset(tmp_path / "data", num_images=6, size=64, seed=2)
    options = dict(encoder="mobilenetv2", freeze_encoder_epochs=1, base_filters=2, batch_size=2,
                   steps_per_epoch=2, epochs=3, verbose=0)  # fmt: skip
    first, second = Watch(), Watch()
    with pytest.raises(RuntimeError, match="killed"):
        train(data, tmp_path / "run", callbacks=[first, Crash()], **options)
    (begin, decoder_begin), (encoder_1, decoder_1), (encoder_2, _) = first.seen
    np.testing.assert_array_equal(encoder_1, begin)  # the warm-up epoch left the backbone alone
    assert not np.array_equal(decoder_1, decoder_begin)  # ... and trained the decoder
    assert not np.array_equal(encoder_2, begin)  # epoch 2 trains the backbone
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Skipping variable loading")
        result = train(data, tmp_path / "run", callbacks=[second], **options)  # at epoch 3
    np.testing.assert_array_equal(second.seen[0][0], encoder_2)
    last = keras.saving.load_model(tmp_path / "run" / "last.keras", safe_mode=True)
    assert int(last.optimizer.iterations) == 3 * 2  # no optimizer state was dropped
    layers = backbone_layers(result.model, "mobilenetv2")
    assert layers[0].name == "Conv1" and all(layer.trainable for layer in layers)


def test_the_warm_up_needs_an_encoder_that_is_not_frozen_for_good():
    from unet_lib.training.config import ENCODER_DEPTH, TrainConfig

    assert 2**ENCODER_DEPTH == ENCODER_STRIDE
    with pytest.raises(ValueError, match="freeze_encoder_epochs needs an encoder"):
        TrainConfig(data="d", freeze_encoder_epochs=2)
    with pytest.raises(ValueError, match="freeze_encoder=False, got 2"):
        TrainConfig(data="d", encoder="vgg16", freeze_encoder=True, freeze_encoder_epochs=2)
    with pytest.raises(ValueError, match="freeze_encoder_epochs must be a whole number >= 0"):
        TrainConfig(data="d", encoder="vgg16", freeze_encoder_epochs=-1)
