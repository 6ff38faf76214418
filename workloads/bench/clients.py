"""Inference clients with one interface: REST and gRPC (KServe v2, binary), in-process OpenVINO and TF.

The server clients are tritonclient's (the standard KServe v2 client): no server code (kserve) is
imported on the bench's path, so the bench image needs none.

``prepare(batch)`` encodes a batch once (the load generator re-sends prepared requests, so
the client's own encoding never limits the server); ``send(prepared)`` runs it and returns
(N, classes) probabilities; ``infer(batch)`` does both. A batch is an (N, S, S, 3) float32
array (input_format "tensor") or a list of encoded image files (input_format "jpeg").

Server errors become one-line :class:`BenchError` subclasses; control calls (metadata,
readiness, known-answer checks) go through :func:`with_retries`, measured requests do not:
there an error is counted and fails the repetition.
"""

from __future__ import annotations

import http.client
import importlib
import ipaddress
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import numpy as np

from contracts.errors import BenchError
from workloads.bench.payloads import (
    INPUT_NAME,
    OUTPUT_NAME,
    Batch,
    infer_input,
    probabilities,
    tensor_payload,
)
from workloads.images import decode_batch

T = TypeVar("T")
UP_HINT = "is the server up? `invoke up --target local`"  # the default target; clients may name another


# --- errors and retries -----------------------------------------------------------------------


class Unreachable(BenchError):
    """No connection to the endpoint (refused, reset, unknown host)."""

    def __init__(self, where: str, reason: str, attempts: int = 1, hint: str = UP_HINT):
        self.where, self.reason, self.attempts, self.hint = where, reason, attempts, hint
        tries = f" after {attempts} tries" if attempts > 1 else ""
        super().__init__(f"cannot reach {where}{tries}: {reason} ({hint})")


class NotReady(BenchError):
    """HTTP 503 / gRPC UNAVAILABLE from a live server: the model is still loading."""


class BadRequest(BenchError):
    """HTTP 400 / gRPC INVALID_ARGUMENT: retrying cannot help."""


class ModelMissing(BenchError):
    """HTTP 404 / gRPC NOT_FOUND for the model."""


class NotKServeV2(BenchError):
    """The endpoint answers HTTP but not the KServe v2 protocol (no V2 server metadata at /v2)."""


class RequestTimeout(BenchError):
    """No answer within bench.request_timeout_seconds."""


class MalformedAnswer(BenchError):
    """An answer that is not what the protocol says (a body that is not its JSON)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for control calls: a few tries when unreachable, a deadline while not ready."""

    connect_attempts: int = 3
    backoff_seconds: float = 0.25  # doubled after every try, up to max_backoff_seconds
    max_backoff_seconds: float = 2.0
    ready_deadline_seconds: float = 60.0


DEFAULT_RETRY = RetryPolicy()


def with_retries(
    call: Callable[[], T], policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run ``call``; retry :class:`Unreachable` ``connect_attempts`` times and :class:`NotReady`
    until ``ready_deadline_seconds``; everything else (400, 404, timeouts) fails at once."""
    start = time.monotonic()
    delay = policy.backoff_seconds
    attempts = 0
    while True:
        attempts += 1
        try:
            return call()
        except Unreachable as exc:
            if attempts >= policy.connect_attempts:
                raise Unreachable(exc.where, exc.reason, attempts, exc.hint) from None
        except NotReady as exc:
            waited = time.monotonic() - start
            if waited + delay > policy.ready_deadline_seconds:
                raise NotReady(f"{exc}; still not ready after {waited:.1f} s and {attempts} tries") from None
        sleep(delay)
        delay = min(delay * 2, policy.max_backoff_seconds)


def is_loopback(endpoint: str) -> bool:
    """Whether a URL or host:port names this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- model metadata ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a variable dimension


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...] = ()
    platform: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    @property
    def latest_version(self) -> int | None:
        numeric = [int(v) for v in self.versions if str(v).isdigit()]
        return max(numeric) if numeric else None


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str

    def describe(self) -> str:
        return f"{self.name} {self.version}".strip()


def _shape_matches(declared: Sequence[int], given: Sequence[int]) -> bool:
    return len(declared) == len(given) and all(d in (-1, g) for d, g in zip(declared, given, strict=True))


def check_input(metadata: ModelMetadata, image_size: int, input_format: str, batch_size: int) -> None:
    """The served model must take what the bench sends: ``image`` FP32 [N,S,S,3] (or encoded images)."""
    by_name = {spec.name: spec for spec in metadata.inputs}
    spec = by_name.get(INPUT_NAME)
    if spec is None:
        raise BenchError(
            f"model {metadata.name} has inputs {sorted(by_name)}, not '{INPUT_NAME}'; "
            "it is not a model this toolkit published"
        )
    given = f"FP32 [{batch_size}, {image_size}, {image_size}, 3]"
    declared = f"{spec.datatype} {list(spec.shape)}"
    if input_format == "jpeg":
        # Servers that decode images keep declaring the decoded tensor (OVMS) or declare BYTES [-1].
        if spec.datatype == "BYTES" or (len(spec.shape) == 4 and spec.shape[-1] in (-1, 3)):
            return
        raise BenchError(
            f"model {metadata.name} input '{INPUT_NAME}' is {declared}; it cannot take encoded images "
            "(bench.input_format jpeg) — use bench.input_format tensor"
        )
    if spec.datatype != "FP32" or not _shape_matches(spec.shape, (batch_size, image_size, image_size, 3)):
        raise BenchError(
            f"wrong input shape: model {metadata.name} expects '{INPUT_NAME}' {declared}, "
            f"the bench would send {given} (image_size {image_size} from the model card) — the server "
            "serves another model than this repository's; restart it (`invoke up --target local`) "
            "or bench the matching model"
        )


def decode_images(items: Sequence[bytes], image_size: int) -> np.ndarray:
    """Encoded image files → (N, S, S, 3) float32 by workloads.images.decode_batch, as the server decodes."""
    return decode_batch(items, image_size)


class InferenceClient(ABC):
    kind: str  # "rest", "grpc", "openvino", "tensorflow"
    model: str

    @abstractmethod
    def prepare(self, batch: Batch) -> Any: ...

    @abstractmethod
    def send(self, prepared: Any) -> np.ndarray: ...

    def infer(self, batch: Batch) -> np.ndarray:
        return self.send(self.prepare(batch))

    @property
    def endpoint(self) -> str | None:
        """Where requests go (a REST URL or a gRPC host:port); None in process."""
        return None

    @abstractmethod
    def model_metadata(self) -> ModelMetadata: ...

    def server_metadata(self) -> ServerMetadata | None:
        return None

    def wait_until_ready(self) -> None:  # noqa: B027 - in-process runtimes are ready once built
        """Return once the model answers requests (servers: bounded retries while it loads)."""

    def close(self) -> None:  # noqa: B027 - in-process runtimes hold nothing to release
        """Release connections."""


# --- REST -------------------------------------------------------------------------------------


class _PerThread(Generic[T]):
    """One resource per thread, for clients bound to the thread that made them.

    tritonclient.http runs on gevent, whose sockets belong to their thread's hub: a client made
    in one thread fails in another. A scenario keeps its load threads from warm-up to the end
    (scenarios.load_threads); those of ended threads are closed when the next is made, so
    connections do not pile up over scenarios and runs.
    """

    def __init__(self, create: Callable[[], T], close: Callable[[T], None]):
        self._create, self._close = create, close
        self._local = threading.local()
        self._owned: list[tuple[threading.Thread, T]] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        item: T | None = getattr(self._local, "item", None)
        if item is None:
            item = self._create()
            self._local.item = item
            with self._lock:
                ended = [pair for pair in self._owned if not pair[0].is_alive()]
                self._owned = [pair for pair in self._owned if pair[0].is_alive()]
                self._owned.append((threading.current_thread(), item))
            for _, old in ended:
                self._close(old)
        return item

    def drain(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
        self._local = threading.local()
        for _, item in owned:
            self._close(item)


class RestClient(InferenceClient):
    """KServe v2 REST through tritonclient.http (binary tensor extension); one connection per thread."""

    kind = "rest"

    def __init__(
        self,
        url: str,
        model: str,
        *,
        timeout_seconds: float,
        retry: RetryPolicy = DEFAULT_RETRY,
        known_models: Sequence[str] = (),
        up_hint: str = UP_HINT,
    ):
        import tritonclient.http as triton_http
        from tritonclient.utils import InferenceServerException

        self._http, self._server_error = triton_http, InferenceServerException
        self.url = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BenchError(f"{url} is not an HTTP URL; give the REST endpoint as http://host:port")
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self.known_models = tuple(known_models)
        self.up_hint = up_hint
        address, ssl = parts.netloc + parts.path, parts.scheme == "https"
        self._clients: _PerThread[Any] = _PerThread(
            lambda: triton_http.InferenceServerClient(
                address, connection_timeout=timeout_seconds, network_timeout=timeout_seconds, ssl=ssl
            ),
            lambda client: client.close(),
        )
        # Control calls tritonclient has no answer for (status codes of readiness, model lists):
        # the standard library, never through a proxy, as tritonclient itself.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def endpoint(self) -> str:
        return self.url

    def _call(self, what: str, path: str, call: Callable[[Any], T]) -> T:
        """Run ``call(client)`` with this thread's client; every failure becomes one BenchError line."""
        try:
            return call(self._clients.get())
        except self._server_error as exc:
            raise self._status_error(exc.status(), _triton_message(exc), path) from None
        except TimeoutError:
            raise RequestTimeout(
                f"{what} {self.url}{path} got no answer within {self.timeout_seconds:g} s "
                "(bench.request_timeout_seconds)"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(
                self.url, _one_line(str(exc) or type(exc).__name__), hint=self.up_hint
            ) from None
        except ValueError as exc:  # a body that is not the JSON it should be
            raise MalformedAnswer(
                f"{what} {self.url}{path}: malformed answer ({_one_line(str(exc))})"
            ) from None

    def _get(self, path: str) -> tuple[int, bytes]:
        """GET by the standard library: (status, body); unreachable and timeouts as BenchErrors."""
        try:
            with self._opener.open(self.url + path, timeout=self.timeout_seconds) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except TimeoutError:
            raise RequestTimeout(
                f"GET {self.url}{path} got no answer within {self.timeout_seconds:g} s "
                "(bench.request_timeout_seconds)"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise Unreachable(
                self.url, _one_line(str(reason) or type(exc).__name__), hint=self.up_hint
            ) from None

    def _status_error(self, status: str | None, message: str, path: str) -> BenchError:
        code = int(status) if status and status.isdigit() else None
        where = f"{self.url}{path}"
        if code is None:
            return BenchError(f"{where}: {message}")
        if code == 400:
            return BadRequest(f"{self.model} rejected the request (HTTP 400 from {where}): {message}")
        if code == 404:
            self._check_speaks_v2()
            return ModelMissing(model_missing_message(self.model, self.url, self.list_models()))
        if code == 503:
            return NotReady(f"{self.model} is not ready (HTTP 503 from {where}): {message}")
        return BenchError(f"HTTP {code} from {where}: {message}")

    def _check_speaks_v2(self) -> None:
        """Raise :class:`NotKServeV2` unless GET /v2 answers V2 server metadata (name and version)."""
        data: Any = None
        try:
            code, body = self._get("/v2")
        except BenchError as exc:
            answer = f"no answer: {exc}"
        else:
            answer = f"HTTP {code}"
            if code == 200:
                data = _json_or_none(body)
                answer += " without V2 server metadata"
        if isinstance(data, dict) and "name" in data and "version" in data:
            return
        raise NotKServeV2(
            f"{self.url} is not a KServe v2 server (GET {self.url}/v2 answered {answer}); "
            "point the bench at a KServe v2 endpoint (`invoke up --target local`, OVMS, or --endpoint)"
        )

    def list_models(self) -> list[str] | None:
        """Model names the server has: KServe's GET /v2/models, OVMS's GET /v1/config, else the known ones."""
        for path, pick in (("/v2/models", lambda d: d.get("models")), ("/v1/config", lambda d: list(d))):
            try:
                code, body = self._get(path)
                names = pick(_json_or_none(body)) if code == 200 else None
            except (BenchError, AttributeError, TypeError):
                continue
            if isinstance(names, list):
                return sorted(str(n) for n in names)
        return list(self.known_models) or None

    def prepare(self, batch: Batch) -> Any:
        return [infer_input(tensor_payload(batch), self._http)]

    def send(self, prepared: Any) -> np.ndarray:
        path = f"/v2/models/{self.model}/infer"
        return probabilities(self._call("POST", path, lambda client: client.infer(self.model, prepared)))

    def model_metadata(self) -> ModelMetadata:
        path = f"/v2/models/{self.model}"

        def fetch() -> Any:
            try:
                data = self._call("GET", path, lambda client: client.get_model_metadata(self.model))
            except MalformedAnswer:
                data = None
            if not isinstance(data, dict):
                self._check_speaks_v2()
                raise NotKServeV2(
                    f"{self.url}{path} answered without V2 model metadata (JSON); is it a KServe v2 server?"
                )
            return data

        data = with_retries(fetch, self.retry)
        return ModelMetadata(
            name=str(data.get("name", self.model)),
            versions=tuple(str(v) for v in data.get("versions") or ()),
            platform=str(data.get("platform") or ""),
            inputs=tuple(_spec(t) for t in data.get("inputs") or ()),
            outputs=tuple(_spec(t) for t in data.get("outputs") or ()),
        )

    def server_metadata(self) -> ServerMetadata | None:
        try:
            data = with_retries(
                lambda: self._call("GET", "/v2", lambda client: client.get_server_metadata()), self.retry
            )
        except (ModelMissing, BadRequest, NotKServeV2, MalformedAnswer):
            return None
        if not isinstance(data, dict):
            return None
        return ServerMetadata(str(data.get("name", "")), str(data.get("version", "")))

    def wait_until_ready(self) -> None:
        path = f"/v2/models/{self.model}/ready"

        def ready() -> None:
            code, body = self._get(path)
            if code >= 300:
                raise self._status_error(str(code), _body_message(body), path)

        with_retries(ready, self.retry)

    def close(self) -> None:
        self._clients.drain()


def _spec(tensor: dict) -> TensorSpec:
    shape = tuple(int(d) for d in tensor.get("shape", ()))
    return TensorSpec(str(tensor.get("name")), str(tensor.get("datatype")), shape)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _body_message(body: bytes) -> str:
    """A server's error body in one line: its JSON ``error`` (KServe, OVMS) or ``detail``, else the text."""
    data = _json_or_none(body)
    if isinstance(data, dict) and ("error" in data or "detail" in data):
        return _one_line(str(data.get("error") or data.get("detail")))
    return _one_line(body.decode("utf-8", "replace"))


def _triton_message(exc: Any) -> str:
    # tritonclient keeps the raw body as debug details when it is not {"error": …} JSON.
    details = exc.debug_details()
    if isinstance(details, str) and details:
        return _body_message(details.encode())
    return _one_line(exc.message() or "")


def model_missing_message(model: str, where: str, available: Sequence[str] | None) -> str:
    listing = f"it serves: {', '.join(available)}" if available else "it lists no models"
    return (
        f"model {model} is not served by {where} ({listing}); "
        "publish it (`invoke optimize`) and restart the server"
    )


# --- gRPC -------------------------------------------------------------------------------------

_CONNECTION_WORDS = ("connect", "dns", "resolv", "lookup", "socket", "unreachable", "no route")
_grpc_module_lock = threading.Lock()


def tritonclient_grpc() -> ModuleType:
    """``tritonclient.grpc``, its KServe v2 protobuf types in a descriptor pool of their own.

    kserve (the local server, loaded by the tests and by `invoke pipeline`) registers the same
    ``inference.*`` messages from another file; protobuf refuses a second definition of a name in
    one pool, whichever is imported second. Apart, both load, in either order.
    """
    with _grpc_module_lock:
        if "tritonclient.grpc" not in sys.modules:
            from google.protobuf import descriptor_pool

            default, private = descriptor_pool.Default, descriptor_pool.DescriptorPool()
            descriptor_pool.Default = lambda: private  # what generated *_pb2 modules register into
            try:
                importlib.import_module("tritonclient.grpc")
            finally:
                descriptor_pool.Default = default
        return sys.modules["tritonclient.grpc"]


class GrpcClient(InferenceClient):
    """KServe v2 gRPC through tritonclient.grpc (raw_input_contents); one channel for all threads."""

    kind = "grpc"

    def __init__(
        self,
        target: str,
        model: str,
        *,
        timeout_seconds: float,
        retry: RetryPolicy = DEFAULT_RETRY,
        known_models: Sequence[str] = (),
        up_hint: str = UP_HINT,
    ):
        if target.startswith(("http://", "https://")):
            raise BenchError(
                f"{target} is an HTTP URL but bench.protocol is grpc; give the gRPC port as host:port "
                "or set bench.protocol=rest"
            )
        grpc = tritonclient_grpc()
        from tritonclient.utils import InferenceServerException

        self._grpc, self._server_error = grpc, InferenceServerException
        self.target = target.removeprefix("grpc://")
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.retry = retry
        self.known_models = tuple(known_models)
        self.up_hint = up_hint
        # tritonclient's channel: unlimited message sizes, thread-safe, shared by all threads.
        self._client = grpc.InferenceServerClient(self.target)

    @property
    def endpoint(self) -> str:
        return self.target

    def _call(self, call: Callable[..., T], *args: Any) -> T:
        try:
            return call(*args, client_timeout=self.timeout_seconds)
        except self._server_error as exc:
            raise self._error(exc) from None

    def _error(self, exc: Any) -> BenchError:
        """A tritonclient error (status ``StatusCode.<NAME>`` for an RPC status) as a BenchError."""
        status = str(exc.status() or "").removeprefix("StatusCode.")
        details = _one_line(exc.message() or "")
        if status == "UNAVAILABLE":
            if any(word in details.lower() for word in _CONNECTION_WORDS):
                return Unreachable(self.target, details, hint=self.up_hint)
            return NotReady(f"{self.model} is not ready (gRPC UNAVAILABLE from {self.target}): {details}")
        if status == "INVALID_ARGUMENT":
            return BadRequest(
                f"{self.model} rejected the request (gRPC INVALID_ARGUMENT from {self.target}): {details}"
            )
        if status == "NOT_FOUND":
            return ModelMissing(model_missing_message(self.model, self.target, self.known_models))
        if status == "DEADLINE_EXCEEDED":
            return RequestTimeout(
                f"{self.target} did not answer within {self.timeout_seconds:g} s "
                "(bench.request_timeout_seconds)"
            )
        if not status:
            return BenchError(f"gRPC call to {self.target} failed: {details}")
        return BenchError(f"gRPC {status} from {self.target}: {details}")

    def prepare(self, batch: Batch) -> Any:
        return [infer_input(tensor_payload(batch), self._grpc)]

    def send(self, prepared: Any) -> np.ndarray:
        return probabilities(self._call(self._client.infer, self.model, prepared))

    def model_metadata(self) -> ModelMetadata:
        data = with_retries(lambda: self._call(self._client.get_model_metadata, self.model), self.retry)

        def specs(tensors: Any) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in tensors)

        return ModelMetadata(
            data.name or self.model,
            tuple(data.versions),
            data.platform,
            specs(data.inputs),
            specs(data.outputs),
        )

    def server_metadata(self) -> ServerMetadata | None:
        try:
            data = with_retries(lambda: self._call(self._client.get_server_metadata), self.retry)
        except (ModelMissing, BadRequest):
            return None
        return ServerMetadata(data.name, data.version)

    def wait_until_ready(self) -> None:
        def ready() -> None:
            if not self._call(self._client.is_model_ready, self.model):
                raise NotReady(f"{self.model} is not ready (gRPC ModelReady from {self.target} says false)")

        with_retries(ready, self.retry)

    def close(self) -> None:
        self._client.close()


# --- in process -------------------------------------------------------------------------------


class TensorFlowClient(InferenceClient):
    """The run's SavedModel ``serving_default`` signature, called in this process."""

    kind = "tensorflow"

    def __init__(self, saved_model_dir: Path, *, image_size: int, model: str = "saved_model"):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import tensorflow as tf
        except ImportError:
            raise BenchError("the tensorflow runtime needs TensorFlow: pip install -e '.[tf]'") from None
        self._tf = tf
        self.model = model
        self.image_size = image_size
        self._loaded = tf.saved_model.load(str(saved_model_dir))
        self._serve = self._loaded.signatures.get("serving_default")
        if self._serve is None:
            raise BenchError(f"{saved_model_dir} has no 'serving_default' signature; re-export the model")
        self._input = self._serve.structured_input_signature[1].get(INPUT_NAME)
        if self._input is None or OUTPUT_NAME not in self._serve.structured_outputs:
            raise BenchError(
                f"{saved_model_dir} serving_default does not map '{INPUT_NAME}' → '{OUTPUT_NAME}'"
            )

    def prepare(self, batch: Batch) -> Any:
        if isinstance(batch, np.ndarray):
            return np.ascontiguousarray(batch, dtype=np.float32)
        return tuple(bytes(item) for item in batch)

    def send(self, prepared: Any) -> np.ndarray:
        images = prepared if isinstance(prepared, np.ndarray) else decode_images(prepared, self.image_size)
        try:
            output = self._serve(**{INPUT_NAME: self._tf.constant(images)})[OUTPUT_NAME]
        except (self._tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            message = f"TensorFlow rejected a batch of shape {images.shape}: {_one_line(str(exc))}"
            raise BadRequest(message) from None
        return output.numpy()

    def model_metadata(self) -> ModelMetadata:
        shape = tuple(-1 if d is None else int(d) for d in self._input.shape.as_list())
        return ModelMetadata(self.model, inputs=(TensorSpec(INPUT_NAME, "FP32", shape),))
