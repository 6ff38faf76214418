"""Independent KServe v2 clients against the local server, as they would call OVMS.

tritonclient (REST with and without the binary extension, and gRPC) and curl-style requests
(``curl --data``: a JSON body sent as application/x-www-form-urlencoded, or with no content type)
must be answered with what in-process OpenVINO computes on the same IR and precision hint.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess

import numpy as np
import openvino as ov
import pytest
import tritonclient.http as httpclient
from loopback import serving
from tritonclient.utils import InferenceServerException

from contracts.model_repository import execution_precision
from workloads.bench.clients import tritonclient_grpc
from workloads.classes import CLASS_CODES
from workloads.data.manifest import SplitManifest
from workloads.images import load_batch

pytestmark = pytest.mark.slow

S = 64  # the served_repository model's image size
MODELS = ("bone-marrow-fp32", "bone-marrow-int8")
OUTPUT = "probabilities"
# tritonclient.grpc in a descriptor pool of its own: kserve (imported by other test modules) registers
# the same inference.* protobuf names, and one pool refuses a second definition.
grpcclient = tritonclient_grpc()
CURL = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "60"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, served_repository):
    with serving(tmp_path_factory.mktemp("kserve-clients"), served_repository) as info:
        yield info


@pytest.fixture(scope="module")
def reference(server):
    """In-process OpenVINO on the IR files the server loaded, with the precision hint it pinned."""
    core = ov.Core()
    compiled = {
        name: core.compile_model(
            f"{m['path']}/model.xml",
            "CPU",
            {"INFERENCE_PRECISION_HINT": execution_precision(m["precision"])},
        )
        for name, m in server.models.items()
    }
    return lambda name, batch: compiled[name](batch)[0]


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(11).uniform(0, 255, (2, S, S, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def rest(server):
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server):
    client = grpcclient.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


def http_infer(rest, name, batch, *, binary_input, binary_output):
    tensor = httpclient.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary_input)
    output = httpclient.InferRequestedOutput(OUTPUT, binary_data=binary_output)
    return rest.infer(name, [tensor], outputs=[output])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    ("binary_input", "binary_output"),
    [(True, True), (False, False), (False, True), (True, False)],
    ids=["binary", "json", "json-in-binary-out", "binary-in-json-out"],
)
def test_tritonclient_rest_matches_in_process(rest, reference, batch, name, binary_input, binary_output):
    result = http_infer(rest, name, batch, binary_input=binary_input, binary_output=binary_output)
    (output,) = result.get_response()["outputs"]
    assert output["name"] == OUTPUT and output["shape"] == [2, len(CLASS_CODES)]
    assert ("data" not in output) is binary_output  # JSON numbers unless binary output was asked for
    np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(name, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_tritonclient_grpc_matches_in_process(grpc_client, reference, batch, name):
    tensor = grpcclient.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = grpc_client.infer(name, [tensor], outputs=[grpcclient.InferRequestedOutput(OUTPUT)])
    np.testing.assert_allclose(result.as_numpy(OUTPUT), reference(name, batch), atol=1e-5, rtol=0)


def test_tritonclient_metadata_and_health(rest, grpc_client, server):
    assert rest.is_server_live() and rest.is_server_ready() and grpc_client.is_server_ready()
    for name in MODELS:
        assert rest.is_model_ready(name) and grpc_client.is_model_ready(name)
        metadata = rest.get_model_metadata(name)
        assert metadata["versions"] == [str(server.models[name]["version"])]
        assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, S, S, 3]}]
        assert grpc_client.get_model_metadata(name).inputs[0].name == "image"


@pytest.fixture(scope="module")
def jpegs(served_repository):
    manifest = SplitManifest.load(served_repository / "data" / "split.json")
    return [entry.path for entry in manifest.entries("test")[:3]]


def test_tritonclient_jpeg_bytes_equal_the_tensor_path(rest, grpc_client, jpegs):
    name = "bone-marrow-int8"
    expected = http_infer(rest, name, load_batch(jpegs, S), binary_input=True, binary_output=True)
    encoded = np.array([path.read_bytes() for path in jpegs], dtype=np.object_)
    assert all(data[:2] == b"\xff\xd8" for data in encoded)  # JPEG
    http_tensor = httpclient.InferInput("image", [len(encoded)], "BYTES")
    http_tensor.set_data_from_numpy(encoded, binary_data=True)
    grpc_tensor = grpcclient.InferInput("image", [len(encoded)], "BYTES")
    grpc_tensor.set_data_from_numpy(encoded)
    for result in (rest.infer(name, [http_tensor]), grpc_client.infer(name, [grpc_tensor])):
        np.testing.assert_allclose(result.as_numpy(OUTPUT), expected.as_numpy(OUTPUT), atol=1e-3, rtol=0)


def test_tritonclient_gets_the_servers_400_message(rest):
    tensor = httpclient.InferInput("image", [1, S + 1, S + 1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, S + 1, S + 1, 3), np.float32), binary_data=False)
    with pytest.raises(InferenceServerException) as error:
        rest.infer("bone-marrow-int8", [tensor])
    assert error.value.status() == "400"
    assert f"must have shape [N, {S}, {S}, 3]" in error.value.message()
    assert rest.is_server_ready()


def json_request(batch: np.ndarray) -> dict:
    return {
        "inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32", "data": batch.tolist()}]
    }


def post(server, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = server.http_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def probabilities(answer: dict) -> np.ndarray:
    (output,) = answer["outputs"]
    assert output["name"] == OUTPUT and output["datatype"] == "FP32"
    return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "text/plain", "application/json"],
)
def test_a_json_body_is_json_whatever_its_content_type(server, reference, batch, content_type):
    """As OVMS: only inference-header-content-length makes a body binary; the content type is ignored."""
    name = "bone-marrow-fp32"
    headers = {} if content_type is None else {"content-type": content_type}
    body = json.dumps(json_request(batch)).encode()  # nested lists: row-major, as the V2 spec allows
    status, answer = post(server, f"/v2/models/{name}/infer", body, headers)
    assert status == 200, answer
    np.testing.assert_allclose(probabilities(answer), reference(name, batch), atol=1e-5, rtol=0)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_curl_data(server, reference, batch, jpegs, tmp_path):
    """`curl --data @request.json` exactly as a user types it (curl sends form-urlencoded)."""
    name = "bone-marrow-int8"
    version = server.models[name]["version"]
    cases = [
        (f"/v2/models/{name}/infer", json_request(batch[:1]), reference(name, batch[:1])),
        (f"/v2/models/{name}/versions/{version}/infer", json_request(batch), reference(name, batch)),
    ]
    image = {"b64": base64.b64encode(jpegs[0].read_bytes()).decode()}
    jpeg_request = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]}
    cases.append((f"/v2/models/{name}/infer", jpeg_request, reference(name, load_batch(jpegs[:1], S))))
    for index, (path, request, expected) in enumerate(cases):
        file = tmp_path / f"request-{index}.json"
        file.write_text(json.dumps(request))
        answer = subprocess.run(
            [*CURL, "--data", f"@{file}", f"{server.http_url}{path}"],
            capture_output=True,
            check=True,
        )
        np.testing.assert_allclose(probabilities(json.loads(answer.stdout)), expected, atol=1e-3, rtol=0)
