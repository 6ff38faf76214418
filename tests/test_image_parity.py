"""One decode + resize everywhere: the same file gives bit-identical pixels on every path to a model.

The reference is workloads.images.decode_image. Each path is taken as its code takes it:
training's tf.data pipeline (an element before augmentation, and the val/test evaluation input),
optimization's loaders (TF↔IR parity batch, test evaluation, INT8 calibration), the local
server's input (a BYTES request of the files and an FP32 request of the bench's tensors, both
through the REST binary decoder into OpenVINOModel.predict) and the bench (its tensor payload,
its in-process JPEG decoding). The server and the bench run a pixels-through IR (the input
reshaped to the output), so what comes back is exactly what the model was given.

The JPEG set includes files on which TensorFlow's own decode (fast IDCT) and resize differ from
Pillow, which is what training used before; the test checks that it does differ on them.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import openvino.properties.hint as hints
import pytest
from PIL import Image

from contracts.model_repository import ModelVersion
from workloads.bench.clients import decode_images as bench_decode_images
from workloads.bench.inprocess import AsyncOpenVinoClient
from workloads.bench.inputs import load_bench_images
from workloads.bench.payloads import encode_rest_request, tensor_payload
from workloads.images import decode_image, load_batch, load_image
from workloads.optimize.evaluate import predict_labels
from workloads.optimize.quantize import CalibrationImages
from workloads.serving.binary import decode_binary_request
from workloads.serving.model import OpenVINOModel, RuntimeSettings
from workloads.training import dataset as datasets
from workloads.training.keras_compat import import_tf_and_keras

S = 64


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int


@dataclass(frozen=True)
class Manifest:
    test: tuple[Entry, ...]

    def entries(self, split: str) -> tuple[Entry, ...]:
        return self.test if split == "test" else ()


def _cells(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colour blobs plus noise: texture on which JPEG decoders' IDCTs disagree."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack(
        [np.sin(6 * x + seed) * 60 + 150, np.cos(5 * y - seed) * 50 + 110, np.sin(4 * (x + y)) * 40 + 170],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """JPEG and PNG files of the kinds a data set or a client may hold, one per label."""
    root = tmp_path_factory.mktemp("parity")
    images: dict[str, tuple[Image.Image, dict]] = {
        # The Kaggle files' shape: 250×250 RGB JPEG, 4:2:0 chroma; downscaled (antialiased).
        "cell.jpg": (Image.fromarray(_cells(250, 250, 1)), {"quality": 90}),
        "cell-q75.jpg": (Image.fromarray(_cells(250, 250, 2)), {"quality": 75}),
        "non-square-444.jpg": (Image.fromarray(_cells(90, 160, 3)), {"quality": 95, "subsampling": 0}),
        "exact-size.jpg": (Image.fromarray(_cells(S, S, 4)), {"quality": 85}),  # no resize
        "grey.jpg": (Image.fromarray(_cells(120, 120, 5)[..., 0]), {"quality": 90}),  # mode L
        "cell.png": (Image.fromarray(_cells(250, 250, 6)), {}),
        "small.png": (Image.fromarray(_cells(40, 30, 7)), {}),  # upscaled
        "rgba.png": (Image.fromarray(np.dstack([_cells(100, 100, 8), _cells(100, 100, 9)[..., :1]])), {}),
        "palette.png": (Image.fromarray(_cells(80, 80, 10)).quantize(64), {}),
    }
    paths = {}
    for name, (image, options) in images.items():
        paths[name] = root / name
        image.save(paths[name], **options)
    return paths


@pytest.fixture(scope="module")
def expected(files) -> dict[str, np.ndarray]:
    return {name: decode_image(path.read_bytes(), S) for name, path in files.items()}


@pytest.fixture(scope="module")
def tf():
    return import_tf_and_keras()[0]


def _assert_identical(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], path: str) -> None:
    assert set(got) == set(expected), path
    for name, pixels in got.items():
        assert pixels.shape == (S, S, 3), f"{path}: {name} has shape {pixels.shape}"
        reference = expected[name].astype(np.float32)
        differ = int(np.count_nonzero(np.asarray(pixels, np.float32) != reference))
        assert differ == 0, f"{path}: {name} differs from workloads.images.decode_image in {differ} values"


def test_the_reference_is_pillow_and_the_old_tensorflow_path_differs(tf, files, expected):
    for name, path in files.items():
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if rgb.size != (S, S):
            rgb = rgb.resize((S, S), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(expected[name], np.asarray(rgb), err_msg=name)
        assert expected[name].dtype == np.uint8
        np.testing.assert_array_equal(load_image(path, S), expected[name].astype(np.float32), err_msg=name)

    # What training did before: TF's decode (fast IDCT) and float antialiased resize.
    for name in ("cell.jpg", "cell-q75.jpg", "non-square-444.jpg", "exact-size.jpg"):
        data = files[name].read_bytes()
        tf_decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
        with Image.open(io.BytesIO(data)) as image:
            pil_decoded = np.asarray(image.convert("RGB"))
        assert np.abs(tf_decoded.numpy().astype(int) - pil_decoded).max() > 0, name
        resized = tf.image.resize(tf_decoded, (S, S), method="bilinear", antialias=True)
        old = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8).numpy()
        assert np.count_nonzero(old != expected[name]) > 0, name


def _dataset_pixels(ds, names: list[str]) -> dict[str, np.ndarray]:
    got = {}
    for images, labels in ds:
        for image, label in zip(images.numpy(), labels.numpy(), strict=True):
            got[names[int(label)]] = image
    return got


def test_training_element_before_augmentation(tf, files, expected):
    names = list(files)
    # training=True: the shuffled training pipeline, with augmentation (after the decode) off.
    ds = datasets.build_dataset(
        tf,
        [str(files[n]) for n in names],
        list(range(len(names))),
        image_size=S,
        batch_size=4,
        training=True,
        augment_images=False,
        cache=True,
    )
    assert tuple(ds.element_spec[0].shape) == (None, S, S, 3)
    _assert_identical(_dataset_pixels(ds, names), expected, "training dataset")


@pytest.mark.parametrize("cache", [False, True])
def test_training_evaluation_input(tf, files, expected, cache):
    names = list(files)
    # As run_training builds the val (cached) and test (not cached) inputs of its evaluation.
    ds = datasets.build_dataset(
        tf,
        [str(files[n]) for n in names],
        list(range(len(names))),
        image_size=S,
        batch_size=4,
        training=False,
        cache=cache,
    )
    got = _dataset_pixels(ds, names)
    assert list(got) == names  # evaluation keeps the manifest order
    _assert_identical(got, expected, "training evaluation")


def test_optimize_loaders(files, expected):
    names = list(files)
    paths = [files[n] for n in names]
    # TF↔IR parity batch.
    _assert_identical(dict(zip(names, load_batch(paths, S), strict=True)), expected, "optimize parity")

    # Test-split evaluation: what predict_labels hands every predictor.
    seen: list[np.ndarray] = []

    def predictor(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return np.zeros((len(batch), 21), np.float32)

    predict_labels({"capture": predictor}, paths, S, batch_size=4, progress=lambda line: None)
    _assert_identical(dict(zip(names, np.concatenate(seen), strict=True)), expected, "optimize evaluation")

    # INT8 calibration images.
    calibration = [image[0] for image in CalibrationImages(paths, S, progress=lambda line: None)]
    _assert_identical(dict(zip(names, calibration, strict=True)), expected, "optimize calibration")


@pytest.fixture(scope="module")
def pixels_ir(tmp_path_factory) -> ModelVersion:
    """A published version whose 'probabilities' are its input pixels, flattened."""
    directory = tmp_path_factory.mktemp("pixels") / "1"
    image = ops.parameter([-1, S, S, 3], np.float32, name="image")
    flat = ops.reshape(image, ops.constant(np.array([-1, S * S * 3], np.int64)), special_zero=False)
    model = ov.Model([flat], [image], "pixels")
    model.output(0).get_tensor().set_names({"probabilities"})
    directory.mkdir(parents=True)
    ov.save_model(model, str(directory / "model.xml"), compress_to_fp16=False)
    return ModelVersion(
        name="pixels-fp32",
        precision="fp32",
        version=1,
        directory=directory,
        image_size=S,
        run_id=None,
        sha256="0" * 64,
    )


def _bench(files) -> tuple[list[str], object]:
    names = list(files)
    manifest = Manifest(tuple(Entry(files[n], i) for i, n in enumerate(names)))
    images = load_bench_images(manifest, len(names), S)
    order = [names[label] for label in images.labels]
    return order, images


def test_bench_payloads_and_in_process_decode(files, expected, pixels_ir):
    order, images = _bench(files)
    indices = list(range(len(order)))
    payload = tensor_payload(images.batch(indices, "tensor"))
    assert payload.datatype == "FP32"
    sent = np.frombuffer(payload.raw, dtype="<f4").reshape(payload.shape)
    _assert_identical(dict(zip(order, sent, strict=True)), expected, "bench tensor payload")

    jpeg = images.batch(indices, "jpeg")
    assert list(jpeg) == [files[n].read_bytes() for n in order]  # the files, untouched
    _assert_identical(
        dict(zip(order, bench_decode_images(jpeg, S), strict=True)), expected, "bench in-process decode"
    )
    client = AsyncOpenVinoClient(
        pixels_ir.xml, model="pixels", image_size=S, compile_config={hints.inference_precision: ov.Type.f32}
    )
    for input_format in ("tensor", "jpeg"):
        out = client.send(client.prepare(images.batch(indices, input_format))).reshape(-1, S, S, 3)
        _assert_identical(dict(zip(order, out, strict=True)), expected, f"bench openvino {input_format}")


@pytest.mark.parametrize("input_format", ["jpeg", "tensor"])
def test_server_decodes_bytes_and_takes_tensors_as_the_bench_sends_them(
    files, expected, pixels_ir, input_format
):
    order, images = _bench(files)
    request = encode_rest_request(tensor_payload(images.batch(range(len(order)), input_format)))
    core = ov.Core()
    core.set_property("CPU", {hints.inference_precision: ov.Type.f32})
    model = OpenVINOModel(pixels_ir, RuntimeSettings("LATENCY", num_streams=1, nireq=1), core=core)
    assert model.load()
    try:
        infer = decode_binary_request(request.body, str(request.header_length), model.name)
        assert infer.inputs[0].datatype == ("BYTES" if input_format == "jpeg" else "FP32")
        response = asyncio.run(model.predict(infer))
    finally:
        model.stop()
    out = response.outputs[0].as_numpy().reshape(-1, S, S, 3)
    _assert_identical(dict(zip(order, out, strict=True)), expected, f"server {input_format} input")


def test_training_pipeline_drops_a_file_the_decode_rejects(tf, files, expected, tmp_path):
    """A decode error inside tf.numpy_function is an element error: ignore_errors drops it, no crash."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(files["cell.jpg"].read_bytes()[:200])
    names = ["cell.png", "broken.jpg", "small.png"]
    paths = [str(files["cell.png"]), str(broken), str(files["small.png"])]
    ds = datasets.build_dataset(tf, paths, [0, 1, 2], image_size=S, batch_size=4, training=False, cache=False)
    got = _dataset_pixels(ds, names)
    assert list(got) == ["cell.png", "small.png"]
    _assert_identical(got, {n: expected[n] for n in got}, "training dataset with a broken file")
