"""Model server pieces that need no running server: request decoding, inputs, repository, CLI, helpers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct

import numpy as np
import orjson
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput
from PIL import Image

from contracts.errors import ServingError
from workloads.images import load_image
from workloads.serving import local, server
from workloads.serving.binary import decode_binary_request
from workloads.serving.inputs import check_single_input, decode_images, encoded_images, tensor_batch
from workloads.serving.repository import find_model, find_models

S = 8


def _binary_body(array: np.ndarray, datatype: str = "FP32", name: str = "image", extra: bytes = b""):
    raw = array.tobytes()
    header = orjson.dumps(
        {
            "id": "r1",
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "probabilities"}],
        }
    )
    return header + raw + extra, str(len(header))


def test_binary_request_keeps_the_tensor_as_an_array():
    batch = (np.arange(2 * S * S * 3) % 256).astype(np.float32).reshape(2, S, S, 3)  # pixels are 0..255
    body, length = _binary_body(batch)
    request = decode_binary_request(body, length, "m")
    assert request.id == "r1" and request.use_binary_outputs is True
    assert request.request_outputs[0].name == "probabilities"
    (infer_input,) = request.inputs
    assert isinstance(infer_input.data, np.ndarray)  # not kserve's list of Python floats
    np.testing.assert_array_equal(tensor_batch(infer_input, S), batch)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda body, length: (body[:-5], length), "truncated"),
        (lambda body, length: (body + b"xx", length), "follow the last binary input"),
        (lambda body, length: (body, None), "inference-header-content-length"),
        (lambda body, length: (body, "abc"), "must be an integer"),
        (lambda body, length: (body, str(len(body) + 1)), "but the body has"),
        (lambda body, length: (b"{oops" + body[5:], length), "not valid JSON"),
    ],
)
def test_malformed_binary_requests_are_invalid_input(mutate, message):
    body, length = _binary_body(np.zeros((1, S, S, 3), np.float32))
    with pytest.raises(InvalidInput, match=message):
        decode_binary_request(*mutate(body, length), "m")


def test_binary_size_that_does_not_match_the_shape_is_invalid_input():
    raw = np.zeros((1, S, S, 3), np.float32).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, S, S, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    with pytest.raises(InvalidInput, match="needs 1024"):
        decode_binary_request(header + raw, str(len(header)), "m")


def test_binary_bytes_input_is_length_prefixed_and_checked():
    images = [b"abc", b"defg"]
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    request = decode_binary_request(header + raw, str(len(header)), "m")
    assert encoded_images(request.inputs[0]) == images
    bad = orjson.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}
            ]
        }
    )
    with pytest.raises(InvalidInput, match="4-byte little-endian lengths"):
        decode_binary_request(bad + struct.pack("<I", 50) + b"ab", str(len(bad)), "m")


def test_tensor_checks_name_shape_and_value_count():
    good = InferInput("image", [1, S, S, 3], "FP32", data=[0.0] * (S * S * 3))
    assert check_single_input([good], "image", "m") is good
    assert tensor_batch(good, S).shape == (1, S, S, 3)
    with pytest.raises(InvalidInput, match="one input named 'image'"):
        check_single_input([InferInput("pixels", [1], "FP32")], "image", "m")
    with pytest.raises(InvalidInput, match=r"shape \[N, 8, 8, 3\]"):
        tensor_batch(InferInput("image", [1, 3, S, S], "FP32", data=[0.0] * (S * S * 3)), S)
    with pytest.raises(InvalidInput, match="does not match shape"):
        tensor_batch(InferInput("image", [1, S, S, 3], "FP32", data=[0.0, 1.0]), S)


def test_bytes_images_decode_like_load_image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "cell.png"
    Image.fromarray(pixels).save(path)
    batch = decode_images([path.read_bytes()], S)
    np.testing.assert_array_equal(batch[0], load_image(path, S))
    as_json = InferInput("image", [1], "BYTES", data=[{"b64": base64.b64encode(b"xyz").decode()}])
    assert encoded_images(as_json) == [b"xyz"]
    with pytest.raises(InvalidInput, match="not a decodable image"):
        decode_images([b"not an image"], S)
    with pytest.raises(InvalidInput, match="base64"):
        encoded_images(InferInput("image", [1], "BYTES", data=["*not base64*"]))
    with pytest.raises(InvalidInput, match=r"shape \[N\]"):
        encoded_images(InferInput("image", [1, S], "BYTES", data=[b"x"] * S))


def _publish(repo, name, version, image_size=S, files=("model.xml", "model.bin", "model_card.json")):
    folder = repo / name / str(version)
    folder.mkdir(parents=True)
    for file_name in files:
        content = json.dumps({"image_size": image_size}) if file_name == "model_card.json" else file_name
        (folder / file_name).write_text(content)
    return folder


def test_repository_serves_the_highest_integer_version(tmp_path):
    _publish(tmp_path, "bone-marrow-int8", 2)
    latest = _publish(tmp_path, "bone-marrow-int8", 10)
    (tmp_path / "bone-marrow-int8" / ".staging-abc").mkdir()
    model = find_model(tmp_path, "bone-marrow", "int8")
    assert (model.name, model.version, model.directory, model.image_size) == (
        "bone-marrow-int8",
        10,
        latest,
        S,
    )
    assert model.sha256 == hashlib.sha256(b"model.bin").hexdigest()


def test_repository_problems_are_one_line_serving_errors(tmp_path):
    with pytest.raises(ServingError, match="does not exist; run `invoke optimize`"):
        find_models(tmp_path / "missing", "bone-marrow", ["fp32"])
    _publish(tmp_path, "bone-marrow-fp32", 1)
    with pytest.raises(ServingError, match="no published bone-marrow-int8 in"):
        find_models(tmp_path, "bone-marrow", ["fp32", "int8"])
    _publish(tmp_path, "bone-marrow-int8", 1, files=("model.xml", "model_card.json"))
    with pytest.raises(ServingError, match=r"model\.bin is missing") as error:
        find_models(tmp_path, "bone-marrow", ["fp32", "int8"])
    assert "\n" not in str(error.value)


def test_server_cli_reports_a_missing_repository_in_one_line(tmp_path, capsys):
    assert (
        server.main(["--model-repository", str(tmp_path / "none"), "--http-port", "1", "--grpc-port", "2"])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model repository") and "\n" not in err


def test_server_cli_reports_a_model_without_versions(tmp_path, capsys):
    (tmp_path / "bone-marrow-int8").mkdir()
    assert server.main(["--model-repository", str(tmp_path), "--precisions", "int8"]) == 1
    assert "no integer version folder" in capsys.readouterr().err


def test_log_summary_prefers_the_error_line(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("INFO starting\nerror: model repository x does not exist\nINFO after\n")
    assert local._log_summary(log) == "error: model repository x does not exist"
    log.write_text("Traceback (most recent call last):\n  File x\nRuntimeError: boom\n")
    assert local._log_summary(log) == "RuntimeError: boom"
    log.write_text("")
    assert local._log_summary(log) == "the log is empty"


def test_port_check_names_the_setting():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServingError, match=f"127.0.0.1:{port}.*serving.grpc_port"):
            local._ensure_port_free("127.0.0.1", port, "grpc_port")


def test_server_info_round_trips_through_json():
    info = local.ServerInfo(
        pid=1,
        http_url="http://127.0.0.1:1",
        grpc_target="127.0.0.1:2",
        models={"m-int8": {"version": 3}},
        log_path="x.log",
        started_at="2026-01-01T00:00:00+00:00",
    )
    assert local.ServerInfo.from_dict(json.loads(json.dumps(info.as_dict()))) == info


def test_openvino_errors_report_their_cause_not_where_they_were_raised():
    from workloads.serving.model import openvino_cause

    truncated = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'is_valid_weights_range(m_weights_provider->size(), offset, size)' failed at "
        "src/core/xml_util/src/xml_deserialize_util.cpp:900:\nIncorrect weights in bin file!\n\n"
    )
    assert openvino_cause(truncated) == "Incorrect weights in bin file!"
    assert openvino_cause(RuntimeError("plain message\nmore")) == "plain message"
    only_where = RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n")
    assert openvino_cause(only_where) == "Exception from src/inference/src/cpp/core.cpp:84:"
    assert openvino_cause(RuntimeError("")) == "RuntimeError"


def test_server_logs_rotate_with_a_bounded_count(tmp_path):
    assert local._rotate_logs(tmp_path) is None  # no log yet: nothing to keep
    for start in range(local.LOG_KEEP + 2):
        (tmp_path / local.LOG_FILE).write_text(f"start {start}\n")
        assert local._rotate_logs(tmp_path) == tmp_path / f"{local.LOG_FILE}.1"
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == [f"{local.LOG_FILE}.{n}" for n in range(1, local.LOG_KEEP + 1)]
    newest = local.LOG_KEEP + 1
    for n in range(1, local.LOG_KEEP + 1):
        assert (tmp_path / f"{local.LOG_FILE}.{n}").read_text() == f"start {newest - n + 1}\n"


def test_pid_state_reads_the_recorded_identity_and_older_bare_pids(tmp_path):
    state = local.ServerState(
        pid=123,
        folder=str(tmp_path),
        artifacts_dir="/a",
        token="t",
        host="127.0.0.1",
        http_port=1,
        grpc_port=2,
    )
    (tmp_path / local.PID_FILE).write_text(json.dumps(state.as_dict()) + "\n")
    assert local._read_state(tmp_path) == state
    (tmp_path / local.PID_FILE).write_text("456\n")
    assert local._read_state(tmp_path) == local.ServerState(pid=456)
    for broken in ("", "not json", "[1]", '{"pid": "x"}', "0", "true"):
        (tmp_path / local.PID_FILE).write_text(broken)
        assert local._read_state(tmp_path) is None, broken


def test_a_copied_pid_file_is_never_this_folders_server(tmp_path):
    # The pid is alive and the process is ours only in the sense of a live pid (this test process);
    # what decides is the recorded folder: a copy of another folder's state names that folder.
    original, copy = tmp_path / "a" / "serving" / "local", tmp_path / "b" / "serving" / "local"
    for folder in (original, copy):
        folder.mkdir(parents=True)
    state = local.ServerState(pid=os.getpid(), folder=str(original.resolve()), token="t", http_port=1)
    (copy / local.PID_FILE).write_text(json.dumps(state.as_dict()))
    # This process does not run the server module: stale, whatever the state says.
    assert local._identify(copy) == ("stale", state)


def test_the_server_reports_its_start_token_in_its_v2_metadata():
    plane = server.InstanceDataPlane({}, "abc")
    metadata = plane.metadata()
    assert f"{local.INSTANCE_EXTENSION_PREFIX}abc" in metadata["extensions"]
    assert "model_repository_extension" in metadata["extensions"]
