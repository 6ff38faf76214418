"""The local model server speaks KServe v2 as OVMS does: REST + gRPC, binary, JSON and image inputs."""

from __future__ import annotations

import asyncio
import base64
import io

import grpc
import httpx
import numpy as np
import openvino as ov
import orjson
import pytest
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from loopback import serving
from PIL import Image

from contracts.model_repository import execution_precision
from workloads.classes import CLASS_CODES
from workloads.data.manifest import SplitManifest
from workloads.images import load_batch

pytestmark = pytest.mark.slow

S = 64  # the served_repository model's image size
MODELS = ("bone-marrow-fp32", "bone-marrow-int8")
HEADER = "inference-header-content-length"


@pytest.fixture(scope="module")
def server(tmp_path_factory, served_repository):
    with serving(tmp_path_factory.mktemp("protocol"), served_repository) as info:
        yield info


@pytest.fixture(scope="module")
def rest(server):
    with httpx.Client(base_url=server.http_url, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def reference(server):
    """In-process OpenVINO on the very IR files the server loaded, with the precision hint it pinned
    (left to OpenVINO, it is bf16 on CPUs with AVX512_BF16 or AMX)."""
    core = ov.Core()
    compiled = {
        name: core.compile_model(
            f"{m['path']}/model.xml", "CPU", {"INFERENCE_PRECISION_HINT": execution_precision(m["precision"])}
        )
        for name, m in server.models.items()
    }
    return lambda name, batch: compiled[name](batch)[0]


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(7).uniform(0, 255, (3, S, S, 3)).astype(np.float32)


def binary_request(array, *, binary_output=True, datatype="FP32", name="image", shape=None):
    raw = array.tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(shape or array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": binary_output},
        }
    )
    headers = {"content-type": "application/octet-stream", HEADER: str(len(header))}
    return header + raw, headers


def probabilities_from(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    if HEADER in response.headers:
        size = int(response.headers[HEADER])
        header = orjson.loads(response.content[:size])
        (output,) = header["outputs"]
        data = np.frombuffer(response.content[size:], dtype=np.float32)
    else:
        (output,) = response.json()["outputs"]
        data = np.asarray(output["data"], dtype=np.float32)
    assert output["name"] == "probabilities" and output["datatype"] == "FP32"
    return data.reshape(output["shape"])


def assert_ready(rest):
    assert rest.get("/v2/health/ready").json() == {"ready": True}


def test_health_and_server_metadata(rest, stub):
    assert rest.get("/v2/health/live").json() == {"live": True}
    assert_ready(rest)
    metadata = rest.get("/v2").json()
    assert metadata["name"] == "kserve" and metadata["version"] == "0.21.0"
    assert sorted(rest.get("/v2/models").json()["models"]) == list(MODELS)
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "kserve"


@pytest.mark.parametrize("name", MODELS)
def test_model_metadata_and_readiness(rest, stub, server, name):
    metadata = rest.get(f"/v2/models/{name}").json()
    assert metadata == {
        "name": name,
        "versions": [str(server.models[name]["version"])],
        "platform": "OpenVINO",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, S, S, 3]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(CLASS_CODES)]}],
    }
    assert rest.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    grpc_metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=name))
    assert [(t.name, t.datatype, list(t.shape)) for t in grpc_metadata.inputs] == [
        ("image", "FP32", [-1, S, S, 3])
    ]
    assert list(grpc_metadata.outputs[0].shape) == [-1, len(CLASS_CODES)]
    assert stub.ModelReady(pb.ModelReadyRequest(name=name)).ready


@pytest.mark.parametrize("name", MODELS)
def test_rest_binary_round_trip_matches_in_process_openvino(rest, reference, batch, name):
    body, headers = binary_request(batch)
    response = rest.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    assert HEADER in response.headers  # binary output: JSON header size, then the raw FP32 bytes
    probabilities = probabilities_from(response)
    assert probabilities.shape == (3, len(CLASS_CODES))
    np.testing.assert_allclose(probabilities, reference(name, batch), atol=1e-5, rtol=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_rest_binary_input_with_json_output_and_plain_json(rest, reference, batch):
    name = "bone-marrow-int8"
    body, headers = binary_request(batch, binary_output=False)
    response = rest.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    assert HEADER not in response.headers
    np.testing.assert_allclose(probabilities_from(response), reference(name, batch), atol=1e-5, rtol=0)

    payload = {
        "inputs": [
            {"name": "image", "shape": [1, S, S, 3], "datatype": "FP32", "data": batch[:1].ravel().tolist()}
        ]
    }
    response = rest.post(f"/v2/models/{name}/infer", json=payload)
    np.testing.assert_allclose(probabilities_from(response), reference(name, batch[:1]), atol=1e-5, rtol=0)


def test_a_binary_body_is_binary_whatever_its_content_type(rest, reference, batch):
    """As OVMS: the inference-header-content-length header, not the content type, makes it binary."""
    name = "bone-marrow-fp32"
    body, headers = binary_request(batch)
    for content_type in ("application/json", "application/x-www-form-urlencoded", None):
        sent = {k: v for k, v in {**headers, "content-type": content_type}.items() if v is not None}
        response = rest.post(f"/v2/models/{name}/infer", content=body, headers=sent)
        np.testing.assert_allclose(probabilities_from(response), reference(name, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_grpc_round_trip_matches_in_process_openvino(stub, reference, batch, name):
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=list(batch.shape))
    response = stub.ModelInfer(
        pb.ModelInferRequest(model_name=name, inputs=[tensor], raw_input_contents=[batch.tobytes()])
    )
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == (
        "probabilities",
        "FP32",
        [3, len(CLASS_CODES)],
    )
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(3, -1)
    np.testing.assert_allclose(probabilities, reference(name, batch), atol=1e-5, rtol=0)

    contents = pb.ModelInferRequest.InferInputTensor(
        name="image",
        datatype="FP32",
        shape=[1, S, S, 3],
        contents=pb.InferTensorContents(fp32_contents=batch[0].ravel()),
    )
    response = stub.ModelInfer(pb.ModelInferRequest(model_name=name, inputs=[contents]))
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(1, -1)
    np.testing.assert_allclose(probabilities, reference(name, batch[:1]), atol=1e-5, rtol=0)


def test_kserve_clients_work_unchanged(server, reference, batch):
    """kserve's own REST and gRPC clients, as a KServe/OVMS user would call them."""
    name = "bone-marrow-int8"

    async def call():
        rest_client = InferenceRESTClient(RESTConfig(protocol="v2"))
        grpc_client = InferenceGRPCClient(server.grpc_target)
        try:
            results = []
            for client, kwargs in (
                (rest_client, {"base_url": server.http_url, "model_name": name}),
                (grpc_client, {}),
            ):
                tensor = InferInput("image", list(batch.shape), "FP32")
                tensor.set_data_from_numpy(batch, binary_data=True)
                request = InferRequest(name, [tensor], parameters={"binary_data_output": True})
                if kwargs:
                    response = await client.infer(kwargs["base_url"], request, model_name=name)
                else:
                    response = await client.infer(request)
                results.append(response.outputs[0].as_numpy())
            assert await rest_client.is_server_ready(server.http_url)
            return results
        finally:
            await rest_client.close()
            await grpc_client.close()

    for probabilities in asyncio.run(call()):
        np.testing.assert_allclose(
            np.asarray(probabilities).reshape(3, -1), reference(name, batch), atol=1e-5, rtol=0
        )


@pytest.fixture(scope="module")
def test_images(served_repository):
    manifest = SplitManifest.load(served_repository / "data" / "split.json")
    return [entry.path for entry in manifest.entries("test")[:4]]


def bytes_tensor(images: list[bytes]) -> bytes:
    return b"".join(len(i).to_bytes(4, "little") + i for i in images)


def test_encoded_images_equal_the_tensor_path(rest, stub, test_images):
    """JPEG files sent as BYTES give what the client gets by decoding + resizing them itself."""
    name = "bone-marrow-int8"
    encoded = [path.read_bytes() for path in test_images]
    assert all(data[:2] == b"\xff\xd8" for data in encoded)  # JPEG
    tensors = load_batch(test_images, S)
    body, headers = binary_request(tensors)
    expected = probabilities_from(rest.post(f"/v2/models/{name}/infer", content=body, headers=headers))

    raw = bytes_tensor(encoded)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [len(encoded)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    response = rest.post(
        f"/v2/models/{name}/infer",
        content=header + raw,
        headers={"content-type": "application/octet-stream", HEADER: str(len(header))},
    )
    np.testing.assert_allclose(probabilities_from(response), expected, atol=1e-3, rtol=0)

    tensor = pb.ModelInferRequest.InferInputTensor(
        name="image",
        datatype="BYTES",
        shape=[len(encoded)],
        contents=pb.InferTensorContents(bytes_contents=encoded),
    )
    response = stub.ModelInfer(pb.ModelInferRequest(model_name=name, inputs=[tensor]))
    grpc_probabilities = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(
        len(encoded), -1
    )
    np.testing.assert_allclose(grpc_probabilities, expected, atol=1e-3, rtol=0)


def test_png_of_another_size_is_resized_by_the_server(rest, tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (150, 120, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path = tmp_path / "cell.png"
    path.write_bytes(buffer.getvalue())
    raw = bytes_tensor([buffer.getvalue()])
    payload = {
        "inputs": [
            {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
        ]
    }
    header = orjson.dumps(payload)
    headers = {"content-type": "application/octet-stream", HEADER: str(len(header))}
    from_bytes = probabilities_from(
        rest.post("/v2/models/bone-marrow-fp32/infer", content=header + raw, headers=headers)
    )
    body, headers = binary_request(load_batch([path], S))
    from_tensor = probabilities_from(
        rest.post("/v2/models/bone-marrow-fp32/infer", content=body, headers=headers)
    )
    np.testing.assert_allclose(from_bytes, from_tensor, atol=1e-3, rtol=0)

    # JSON can only carry text: base64, plain or OVMS-style {"b64": ...}.
    encoded = base64.b64encode(buffer.getvalue()).decode()
    for element in (encoded, {"b64": encoded}):
        payload = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [element]}]}
        from_json = probabilities_from(rest.post("/v2/models/bone-marrow-fp32/infer", json=payload))
        np.testing.assert_allclose(from_json, from_tensor, atol=1e-3, rtol=0)


def _json(name="image", shape=(1, S, S, 3), datatype="FP32", data=None):
    count = int(np.prod(shape))
    return {
        "inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data or [0.0] * count}]
    }


MALFORMED_REST = {
    "bad json": dict(content=b'{"inputs": [', headers={"content-type": "application/json"}),
    "not a v2 request": dict(json={"instances": [[1, 2, 3]]}),
    "wrong input name": dict(json=_json(name="pixels")),
    "channels first": dict(json=_json(shape=(1, 3, S, S))),
    "wrong image size": dict(json=_json(shape=(1, S + 1, S + 1, 3))),
    "too few values": dict(json=_json(data=[1.0, 2.0])),
    "wrong datatype": dict(json=_json(datatype="INT32", data=[0] * (S * S * 3))),
    "unknown datatype": dict(json=_json(datatype="FLOAT")),
    "bytes that are no image": dict(json=_json(shape=(1,), datatype="BYTES", data=["bm90IGFuIGltYWdl"])),
}


@pytest.mark.parametrize("case", list(MALFORMED_REST))
def test_malformed_rest_requests_are_4xx_and_the_server_stays_up(rest, case):
    response = rest.post("/v2/models/bone-marrow-int8/infer", **MALFORMED_REST[case])
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    assert_ready(rest)


def test_malformed_binary_requests_are_400(rest, batch):
    body, headers = binary_request(batch[:1])
    for broken_body, broken_headers, message in (
        (body[:-100], headers, "truncated"),
        (body, {"content-type": "application/octet-stream"}, HEADER),
        (
            binary_request(batch[:1].astype(np.float64))[0],
            binary_request(batch[:1].astype(np.float64))[1],
            "needs",
        ),
        (*binary_request(batch[:1].astype(np.int32), datatype="INT32"), "must be FP32"),
        (*binary_request(batch[:1], shape=[1, 3, S, S]), "must have shape"),
    ):
        response = rest.post("/v2/models/bone-marrow-int8/infer", content=broken_body, headers=broken_headers)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]
    assert_ready(rest)


def _post_json(rest, payload, **headers):
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return rest.post("/v2/models/bone-marrow-int8/infer", content=body, headers=headers)


COUNT = S * S * 3
MALFORMED_JSON = {
    "fewer values than the shape": (
        _json(data=[1.0, 2.0]),
        f"input 'image' has 2 values in 'data'; shape [1, {S}, {S}, 3] FP32 needs {COUNT}",
    ),
    "more values than the shape": (
        _json(data=[1.0] * (COUNT + 3)),
        f"input 'image' has {COUNT + 3} values in 'data'; shape [1, {S}, {S}, 3] FP32 needs {COUNT}",
    ),
    "ragged nested data": (
        _json(data=[[1.0, 2.0], [3.0]]),
        "input 'image' 'data' must be a list (flat or nested, of one shape) of numbers for FP32",
    ),
    "strings as numbers": (
        _json(data=["1.0"] * COUNT),
        "input 'image' 'data' must be a list (flat or nested, of one shape) of numbers for FP32",
    ),
    "data that is no list": (_json(data={"a": 1}), "input 'image' 'data' must be a list, got dict"),
    "binary_data_size without the header": (
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, S, S, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4 * COUNT},
                }
            ]
        },
        f"input 'image' has no 'data', and its binary_data_size needs the {HEADER} header",
    ),
    "both data and binary_data_size": (
        {"inputs": [{**_json()["inputs"][0], "parameters": {"binary_data_size": 4}}]},
        "input 'image' has both 'data' and a binary_data_size parameter",
    ),
    "no data": (
        {"inputs": [{"name": "image", "shape": [1, S, S, 3], "datatype": "FP32"}]},
        "input 'image' has no 'data'; a JSON tensor carries its values in 'data'",
    ),
    "empty body": (b"", "the request body is not valid JSON"),
}


@pytest.mark.parametrize("case", list(MALFORMED_JSON))
def test_malformed_json_tensors_are_400_with_one_clear_message(rest, case):
    payload, message = MALFORMED_JSON[case]
    for headers in ({}, {"content-type": "application/json"}):
        response = _post_json(rest, payload, **headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(message), response.json()
    assert_ready(rest)


def test_binary_inputs_without_binary_data_size_take_what_ovms_gives_them(rest, reference, batch):
    """OVMS: the size the shape implies, or all the rest of the body for a sole BYTES input."""
    name = "bone-marrow-int8"
    header = orjson.dumps({"inputs": [{"name": "image", "shape": list(batch.shape), "datatype": "FP32"}]})
    response = rest.post(
        f"/v2/models/{name}/infer", content=header + batch.tobytes(), headers={HEADER: str(len(header))}
    )
    np.testing.assert_allclose(probabilities_from(response), reference(name, batch), atol=1e-5, rtol=0)

    buffer = io.BytesIO()
    Image.fromarray(batch[0].astype(np.uint8)).save(buffer, format="PNG")
    header = orjson.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES"}]})
    response = rest.post(
        f"/v2/models/{name}/infer",
        content=header + bytes_tensor([buffer.getvalue()]),
        headers={HEADER: str(len(header))},
    )
    assert probabilities_from(response).shape == (1, len(CLASS_CODES))


def test_unknown_model_is_404_and_not_found(rest, stub, batch):
    body, headers = binary_request(batch[:1])
    response = rest.post("/v2/models/bone-marrow-fp16/infer", content=body, headers=headers)
    assert response.status_code == 404 and "bone-marrow-fp16" in response.json()["error"]
    assert rest.get("/v2/models/bone-marrow-fp16").status_code == 404
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, S, S, 3])
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(
            pb.ModelInferRequest(model_name="nope", inputs=[tensor], raw_input_contents=[batch[0].tobytes()])
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert_ready(rest)


def test_malformed_grpc_requests_are_invalid_argument(stub, rest, batch):
    def call(shape, raw, name="image", datatype="FP32"):
        tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
        return stub.ModelInfer(
            pb.ModelInferRequest(model_name="bone-marrow-int8", inputs=[tensor], raw_input_contents=[raw])
        )

    for args, message in (
        (([1, 3, S, S], batch[0].tobytes()), "must have shape"),
        (([1, S, S, 3], batch[0].tobytes()[:-8]), "does not match shape"),
        (([1, S, S, 3], batch[0].tobytes(), "pixels"), "one input named 'image'"),
        (([1, S, S, 3], batch[0].astype(np.int32).tobytes(), "image", "INT32"), "must be FP32"),
        (([1], b"\x05\x00\x00\x00abc", "image", "BYTES"), "BYTES input"),
    ):
        with pytest.raises(grpc.RpcError) as error:
            call(*args)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert_ready(rest)


def test_versioned_paths_answer_for_the_served_version_only(rest, stub, server, batch):
    name = "bone-marrow-int8"
    version = server.models[name]["version"]
    assert rest.get(f"/v2/models/{name}/versions/{version}").json()["versions"] == [str(version)]
    assert rest.get(f"/v2/models/{name}/versions/{version}/ready").json() == {"name": name, "ready": True}
    body, headers = binary_request(batch[:1])
    response = rest.post(f"/v2/models/{name}/versions/{version}/infer", content=body, headers=headers)
    assert probabilities_from(response).shape == (1, len(CLASS_CODES))
    missing = rest.post(f"/v2/models/{name}/versions/{version + 1}/infer", content=body, headers=headers)
    assert missing.status_code == 404 and f"no version {version + 1}" in missing.json()["error"]

    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, S, S, 3])
    request = pb.ModelInferRequest(model_name=name, inputs=[tensor], raw_input_contents=[batch[0].tobytes()])
    request.model_version = str(version)
    assert len(stub.ModelInfer(request).raw_output_contents[0]) == 4 * len(CLASS_CODES)
    request.model_version = str(version + 1)
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_grpc_accepts_batches_beyond_kserves_default_8_mib_limit(stub, reference):
    batch = np.random.default_rng(1).uniform(0, 255, (200, S, S, 3)).astype(np.float32)
    assert batch.nbytes > 8 * 1024 * 1024
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=list(batch.shape))
    request = pb.ModelInferRequest(
        model_name="bone-marrow-int8", inputs=[tensor], raw_input_contents=[batch.tobytes()]
    )
    response = stub.ModelInfer(request)
    probabilities = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).reshape(200, -1)
    np.testing.assert_allclose(probabilities, reference("bone-marrow-int8", batch), atol=1e-5, rtol=0)
