"""``OpenVINOModel``: one precision of the classifier as a kserve V2 model on the OpenVINO CPU runtime."""

from __future__ import annotations

import asyncio
import logging
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kserve
import numpy as np
import openvino as ov
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from contracts.config import openvino_properties
from contracts.errors import ServingError
from contracts.model_repository import ModelVersion, execution_precision
from workloads.execution_precision import execution_facts
from workloads.openvino_warmup import warm_up_request
from workloads.serving.inputs import check_single_input, decode_images, encoded_images, tensor_batch
from workloads.serving.kserve_server import check_version
from workloads.serving.limits import TRIM_AFTER_BYTES, RequestLimits, release_memory_soon

log = logging.getLogger("workloads.serving")

V2_DATATYPES = {ov.Type.f32: "FP32", ov.Type.f16: "FP16", ov.Type.i64: "INT64", ov.Type.i32: "INT32"}


@dataclass(frozen=True)
class RuntimeSettings:
    """OVMS's knobs: performance hint, streams, inference threads, infer requests (0 = auto)."""

    performance_hint: str = "THROUGHPUT"
    num_streams: int = 0
    inference_threads: int = 0
    nireq: int = 0

    def compile_properties(self, precision: str = "fp32") -> dict[str, Any]:
        """OVMS's plugin_config for one served variant: its INFERENCE_PRECISION_HINT pinned."""
        return openvino_properties(
            self.performance_hint, self.num_streams, self.inference_threads, execution_precision(precision)
        )


class OpenVINOModel(kserve.Model):
    """Serves ``<model>-<precision>``: input ``image`` FP32 [N,S,S,3] or BYTES [N], output FP32 [N,21].

    Inference runs in a thread pool of ``nireq`` threads (the compiled model's optimal number of
    infer requests, or ``nireq``), so THROUGHPUT streams work in parallel while the event loop keeps
    accepting requests. The ``nireq`` infer requests are made in ``load``, as OVMS makes its own at
    load, and each runs once there, one at a time, before the model is ready: concurrent first
    requests once deadlocked a fresh server (see workloads.openvino_warmup).
    """

    def __init__(
        self,
        served: ModelVersion,
        settings: RuntimeSettings,
        core: ov.Core | None = None,
        limits: RequestLimits | None = None,
    ):
        super().__init__(served.name)
        self.served = served
        self.settings = settings
        self.limits = limits or RequestLimits.defaults()
        self._core = core or ov.Core()
        self._compiled: ov.CompiledModel | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._requests: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        self.nireq = 0
        self.input_name = ""
        self.output_name = ""
        self._input_meta: dict[str, Any] = {}
        self._output_meta: dict[str, Any] = {}
        # What OpenVINO executes: {"execution_precision": "f32", "layer_precisions": {...}}.
        self.execution: dict[str, Any] = {}

    def load(self) -> bool:
        served = self.served
        pinned = execution_precision(served.precision)
        try:
            model = self._core.read_model(served.xml)
            compiled = self._core.compile_model(
                model, "CPU", self.settings.compile_properties(served.precision)
            )
        except RuntimeError as exc:
            raise ServingError(f"OpenVINO cannot load {served.xml}: {openvino_cause(exc)}") from None
        self.execution = execution_facts(compiled)
        if self.execution["execution_precision"] != pinned:
            raise ServingError(
                f"{served.name} was compiled with INFERENCE_PRECISION_HINT {pinned}, but OpenVINO reports "
                f"{self.execution['execution_precision']}; this OpenVINO cannot serve {served.precision} here"
            )
        if len(compiled.inputs) != 1 or len(compiled.outputs) != 1:
            raise ServingError(
                f"{served.xml} has {len(compiled.inputs)} inputs and {len(compiled.outputs)} outputs; "
                "the classifier contract is one image input and one probabilities output"
            )
        self._input_meta = _tensor_metadata(compiled.input(0))
        self._output_meta = _tensor_metadata(compiled.output(0))
        self.input_name = self._input_meta["name"]
        self.output_name = self._output_meta["name"]
        if self._input_meta["shape"][1:] != [served.image_size, served.image_size, 3]:
            raise ServingError(
                f"{served.xml} takes input shape {self._input_meta['shape']}, but its model card says "
                f"image_size {served.image_size}; republish the model with `invoke optimize`"
            )
        optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.nireq = self.settings.nireq or optimal
        self._compiled = compiled
        self._make_requests(compiled, self.nireq)
        self._pool = ThreadPoolExecutor(
            max_workers=self.nireq, thread_name_prefix=f"infer-{served.precision}"
        )
        self.ready = True
        log.info(
            "loaded %s version %s (model.bin sha256 %s) · %s · streams %s · inference threads %s · nireq %s"
            " · executes %s (layers %s)",
            served.name,
            served.version,
            served.sha256[:12],
            self.settings.performance_hint,
            compiled.get_property("NUM_STREAMS"),
            compiled.get_property("INFERENCE_NUM_THREADS"),
            self.nireq,
            self.execution["execution_precision"],
            self.execution["layer_precisions"],
        )
        return self.ready

    def runtime_properties(self) -> dict[str, Any]:
        """What OpenVINO actually chose (after the hint), for logs and the endpoints file."""
        if self._compiled is None:
            return {}
        return {
            "performance_hint": str(self._compiled.get_property("PERFORMANCE_HINT")),
            "num_streams": int(self._compiled.get_property("NUM_STREAMS")),
            "inference_threads": int(self._compiled.get_property("INFERENCE_NUM_THREADS")),
            "nireq": self.nireq,
            **self.execution,
        }

    def stop(self) -> None:
        self.ready = False
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def get_input_types(self) -> list[dict[str, Any]]:
        return [self._input_meta]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [self._output_meta]

    async def predict(
        self,
        payload: InferRequest | dict,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(f"model {self.name} speaks the V2 protocol: POST /v2/models/{self.name}/infer")
        if self._pool is None:
            raise InvalidInput(f"model {self.name} is not loaded")
        check_version(self, self.name, payload.model_version)
        infer_input = check_single_input(payload.inputs, self.input_name, self.name)
        size = self.served.image_size
        loop = asyncio.get_running_loop()
        if infer_input.datatype == "BYTES":
            images = encoded_images(infer_input, self.limits)
            received = sum(len(i) for i in images)
            probabilities = await loop.run_in_executor(self._pool, self._decode_and_infer, images, size)
        elif infer_input.datatype == "FP32":
            batch = tensor_batch(infer_input, size, self.limits)
            received = batch.nbytes
            probabilities = await loop.run_in_executor(self._pool, self._infer, batch)
            del batch
        else:
            raise InvalidInput(
                f"input {infer_input.name!r} must be FP32 [N, {size}, {size}, 3] or BYTES [N] "
                f"(encoded images), got datatype {infer_input.datatype}"
            )
        output = InferOutput(name=self.output_name, shape=list(probabilities.shape), datatype="FP32")
        # Raw bytes, not the array: kserve 0.21's to_grpc tests an ndarray's truth value and fails.
        # to_rest turns them back into JSON numbers unless the client asked for binary output.
        output.set_data_from_numpy(probabilities, binary_data=True)
        _default_binary_flags(payload)
        if received >= TRIM_AFTER_BYTES:
            release_memory_soon()  # after the request's buffers are gone (gRPC; REST trims too)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=str(self.served.version),
            infer_outputs=[output],
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )

    def _make_requests(self, compiled: ov.CompiledModel, count: int) -> None:
        """``count`` infer requests, each run once (workloads.openvino_warmup) before any concurrency."""
        for _ in range(count):
            request = compiled.create_infer_request()
            try:
                warm_up_request(request, compiled)
            except RuntimeError as exc:
                raise ServingError(
                    f"OpenVINO cannot run {self.served.xml} on black images: {openvino_cause(exc)}"
                ) from None
            self._requests.put(request)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        # One free request per pool thread: the pool has exactly as many threads as requests.
        request = self._requests.get()
        try:
            # Shared, not copied into the request's own tensor: the batch is already float32 NHWC.
            request.infer({0: batch}, share_inputs=True)
            probabilities = np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        finally:
            if batch.nbytes >= TRIM_AFTER_BYTES:
                # An infer request keeps the buffers of the largest batch it ran; replace this one, so
                # its memory returns to the OS (release_memory_soon) instead of staying allocated.
                request = self._replacement()
            self._requests.put(request)
        return probabilities

    def _replacement(self) -> ov.InferRequest:
        assert self._compiled is not None
        return self._compiled.create_infer_request()

    def _decode_and_infer(self, images: list[bytes], size: int) -> np.ndarray:
        return self._infer(decode_images(images, size, self.limits))


def openvino_cause(exc: BaseException) -> str:
    """The line of an OpenVINO exception that says what is wrong, not where in OpenVINO it was raised.

    OpenVINO's messages open with ``Exception from src/...cpp:84:`` and a ``Check '...' failed at
    ...`` line before the cause (e.g. ``Incorrect weights in bin file!``).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [
        line
        for line in lines
        if not (line.startswith("Exception from ") and line.endswith(":"))
        and not (line.startswith("Check '") and " failed at " in line)
    ]
    return (causes or lines or [type(exc).__name__])[0]


def _tensor_metadata(port: ov.Output) -> dict[str, Any]:
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    datatype = V2_DATATYPES.get(port.get_element_type())
    if datatype is None:
        raise ServingError(
            f"unsupported tensor element type {port.get_element_type()} for {port.get_any_name()}"
        )
    return {"name": port.get_any_name(), "datatype": datatype, "shape": shape}


def _default_binary_flags(request: InferRequest) -> None:
    # kserve 0.21 lets a requested output without its own "binary_data" parameter fall back to
    # JSON even when the request asked for binary_data_output; the V2 binary extension says the
    # request-level flag is the default, so fill it in.
    if not request.request_outputs or request.from_grpc:
        return
    default = bool(request.use_binary_outputs)
    for output in request.request_outputs:
        parameters = dict(output.parameters or {})
        if "binary_data" not in parameters:
            parameters["binary_data"] = default
            output.parameters = parameters
