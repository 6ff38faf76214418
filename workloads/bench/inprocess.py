"""In-process OpenVINO driven the way ``benchmark_app`` drives it: an ``AsyncInferQueue``.

``nireq`` infer requests (the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS unless configured)
run in OpenVINO's own threads; completions are recorded by the queue's callback, so no Python
thread waits per request. :meth:`AsyncRunner.run` is benchmark_app's loop (input tensors set once
per request before the clock starts, then start → callback until both minimums are met);
:class:`AsyncOpenVinoClient` puts the same queue behind the bench's client interface, so the bench's
in-process subject executes as the server does (at most ``nireq`` requests at once, whatever the
load generator's concurrency).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import BenchError
from workloads.bench.clients import BadRequest, InferenceClient, ModelMetadata, TensorSpec, decode_images
from workloads.bench.payloads import INPUT_NAME, OUTPUT_NAME, Batch
from workloads.openvino_warmup import warm_up_request


@dataclass(frozen=True)
class AsyncRun:
    """One measured window of the async loop: latencies in completion order."""

    requests: int
    images: int
    seconds: float
    latencies_ms: tuple[float, ...]
    nireq: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def optimal_nireq(compiled: Any) -> int:
    return int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _Pending:
    """One request in flight for a caller thread: set by the queue's callback."""

    __slots__ = ("done", "error", "output")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.output: np.ndarray | None = None
        self.error = ""


class AsyncRunner:
    """An ``AsyncInferQueue`` of ``nireq`` requests (0: OpenVINO's optimal number) on a compiled model.

    Every request carries its completion handler as the queue's userdata, so the loop, the ordered
    run and blocking callers share one queue and one callback.
    """

    def __init__(self, compiled: Any, *, nireq: int = 0, output_name: str = OUTPUT_NAME):
        import openvino as ov

        if nireq < 0:
            raise BenchError(f"nireq must be >= 0 (0 = OpenVINO's optimal number), got {nireq}")
        self.compiled = compiled
        self.nireq = nireq or optimal_nireq(compiled)
        self._output = compiled.output(output_name)
        self._queue = ov.AsyncInferQueue(compiled, self.nireq)
        for index in range(self.nireq):  # from this thread, before the callbacks' threads read outputs
            warm_up_request(self._queue[index], compiled)
        self._queue.set_callback(_call_handler)
        # The queue's start_async looks up the idle request twice (inputs, then start): one caller at
        # a time keeps both the same request.
        self._start = threading.Lock()

    def _output_of(self, request: Any) -> np.ndarray:
        return np.array(request.get_tensor(self._output).data, dtype=np.float32)

    def _start_async(self, inputs: Any, handler: Callable[[Any], None]) -> None:
        with self._start:
            self._queue.start_async(inputs, handler, share_inputs=True)

    def submit(self, batch: np.ndarray) -> np.ndarray:
        """One batch from a caller thread: waits for a free request and for the answer."""
        pending = _Pending()

        def done(request: Any) -> None:
            try:
                pending.output = self._output_of(request)
            except Exception as exc:  # a failed request must wake its caller, whatever failed
                pending.error = _one_line(str(exc) or type(exc).__name__)
            pending.done.set()

        try:
            self._start_async({INPUT_NAME: batch}, done)
        except RuntimeError as exc:
            raise BadRequest(
                f"OpenVINO rejected a batch of shape {batch.shape}: {_one_line(str(exc))}"
            ) from None
        pending.done.wait()
        if pending.output is None:
            raise BadRequest(f"OpenVINO failed a batch of shape {batch.shape}: {pending.error}")
        return pending.output

    def infer_all(self, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Every batch through the queue (``nireq`` in flight); the outputs in the batches' order."""
        outputs: list[np.ndarray] = [np.empty(0, np.float32)] * len(batches)

        def store(index: int) -> Callable[[Any], None]:
            def done(request: Any) -> None:
                outputs[index] = self._output_of(request)

            return done

        try:
            for index, batch in enumerate(batches):
                self._start_async({INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}, store(index))
        except RuntimeError as exc:
            raise BadRequest(f"OpenVINO rejected a batch: {_one_line(str(exc))}") from None
        finally:
            self._queue.wait_all()
        return outputs

    def run(
        self,
        batches: Sequence[np.ndarray],
        *,
        min_seconds: float,
        min_requests: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> AsyncRun:
        """benchmark_app's measurement: request ``i`` holds ``batches[i % len(batches)]`` (set once,
        before the clock starts); requests start as soon as one is idle until ``min_requests`` were
        started and ``min_seconds`` passed; the window ends when the last one completes."""
        if not batches:
            raise BenchError("no batches to run")
        sizes = {int(np.shape(batch)[0]) for batch in batches}
        if len(sizes) != 1:
            raise BenchError(f"the async loop runs batches of one size, got sizes {sorted(sizes)}")
        (batch_size,) = sizes
        import openvino as ov

        for i in range(self.nireq):
            tensor = ov.Tensor(np.ascontiguousarray(batches[i % len(batches)], dtype=np.float32))
            self._queue[i].set_tensor(INPUT_NAME, tensor)
        latencies: list[float] = []

        def timed(started: float) -> Callable[[Any], None]:
            def done(_request: Any) -> None:
                latencies.append((clock() - started) * 1000.0)

            return done

        issued = 0
        start = clock()
        try:
            while issued < min_requests or clock() - start < min_seconds:
                self._start_async(None, timed(clock()))  # no inputs: each request keeps its tensor
                issued += 1
        except RuntimeError as exc:
            raise BenchError(f"OpenVINO failed a request: {_one_line(str(exc))}") from None
        finally:
            self._queue.wait_all()
        seconds = clock() - start
        return AsyncRun(issued, len(latencies) * batch_size, seconds, tuple(latencies), self.nireq)

    def wait_all(self) -> None:
        self._queue.wait_all()


def _call_handler(request: Any, handler: Callable[[Any], None]) -> None:
    handler(request)


def compile_ir(
    xml_path: Path,
    compile_config: dict[str, Any],
    *,
    batch_size: int | None = None,
    device: str = "CPU",
    core: Any = None,
) -> Any:
    """The IR compiled with ``compile_config``; with ``batch_size`` its batch dimension made static
    first, as ``benchmark_app -b`` reshapes (the local server and OVMS keep the IR's dynamic batch)."""
    import openvino as ov

    core = core or ov.Core()
    try:
        model = core.read_model(str(xml_path))
        if batch_size is not None:
            shape = model.input(INPUT_NAME).get_partial_shape()
            shape[0] = batch_size
            model.reshape({INPUT_NAME: shape})
        return core.compile_model(model, device, compile_config)
    except RuntimeError as exc:
        raise BenchError(f"OpenVINO cannot compile {xml_path}: {_one_line(str(exc))}") from None


class AsyncOpenVinoClient(InferenceClient):
    """The bench's in-process OpenVINO: the IR compiled with the server's settings, run on an
    ``AsyncInferQueue`` of ``nireq`` requests (0: OpenVINO's optimal number), as the server runs it."""

    kind = "openvino"

    def __init__(
        self,
        xml_path: Path,
        *,
        model: str,
        image_size: int,
        compile_config: dict[str, Any],
        nireq: int = 0,
        device: str = "CPU",
    ):
        self.model = model
        self.image_size = image_size
        self._compiled = compile_ir(xml_path, compile_config, device=device)
        self._runner = AsyncRunner(self._compiled, nireq=nireq)

    @property
    def nireq(self) -> int:
        return self._runner.nireq

    @property
    def compiled(self) -> Any:
        return self._compiled

    def prepare(self, batch: Batch) -> Any:
        if isinstance(batch, np.ndarray):
            return np.ascontiguousarray(batch, dtype=np.float32)
        return tuple(bytes(item) for item in batch)

    def send(self, prepared: Any) -> np.ndarray:
        images = prepared if isinstance(prepared, np.ndarray) else decode_images(prepared, self.image_size)
        return self._runner.submit(images)

    def model_metadata(self) -> ModelMetadata:
        port = self._compiled.input(INPUT_NAME)
        shape = tuple(-1 if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        return ModelMetadata(self.model, inputs=(TensorSpec(INPUT_NAME, "FP32", shape),))

    def close(self) -> None:
        self._runner.wait_all()
