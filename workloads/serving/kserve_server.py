"""kserve 0.21 ModelServer, adjusted for a local benchmark target.

Subclasses, not patches, of kserve's classes:

* both listeners bind the configured host (kserve binds 0.0.0.0 and [::]), loopback by default;
* REST infer bodies are read as OVMS reads them, whatever their content type: JSON, or JSON followed
  by binary tensor data when ``inference-header-content-length`` says where the JSON ends; binary
  tensor data stays binary (see ``binary.py``);
* model metadata reports the served version and the platform, and the versioned paths
  (``/v2/models/<name>/versions/<v>/...``) work for the served version, as OVMS does;
* request limits (``limits.py``, ``http_guard.py``): REST bodies above ``serving.max_request_bytes``
  are refused with 413 before they are read, header/body/keep-alive timeouts close slow
  connections, and gRPC refuses messages above the same size (RESOURCE_EXHAUSTED; kserve's limit
  is 8 MiB), bounds its handshake by the header timeout and closes idle connections;
* FastAPI's own 4xx answers (an unknown path, a wrong method, ...) get a log line too;
* no per-request timing middleware and no access or latency log lines in the hot path, and a
  rejected request (400 / 404) is one warning line instead of kserve's traceback;
* ``GET /metrics`` (kserve's Prometheus page) also holds ``kserve_openvino_request_seconds``, the
  server's time per answered inference request, for the bench's server-side figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent import futures
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from grpc import StatusCode, aio
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING, INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound
from kserve.logging import configure_logging
from kserve.model import BaseKServeModel
from kserve.predictor_config import PredictorConfig
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse, ModelReadyResponse
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from prometheus_client import Histogram
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from workloads.serving.binary import decode_rest_request
from workloads.serving.http_guard import REFUSED_SCOPE_KEY, guarded_http_protocol
from workloads.serving.limits import RequestLimits

PLATFORM = "OpenVINO"

log = logging.getLogger("workloads.serving")


class VersionNotFound(ModelNotFound):
    """A version other than the served one: 404 / NOT_FOUND, like an unknown model."""

    def __init__(self, model_name: str, version: str, served: int):
        super().__init__(model_name)
        self.reason = f"model {model_name} has no version {version}; version {served} is served"


def check_version(model: Any, model_name: str, version: str | None) -> None:
    """Accept no version or the served one (gRPC sends "" for none)."""
    served = getattr(model, "served", None)
    if version and served is not None and version != str(served.version):
        raise VersionNotFound(model_name, version, served.version)


def configure_quiet_logging() -> None:
    """kserve's log format, but only warnings from kserve/uvicorn: their INFO lines are per request."""
    configure_logging()
    for name in ("kserve", "kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ours = logging.getLogger("workloads.serving")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


# The server's own time per answered inference request, for the bench's server-side figures
# (workloads.bench.server_metrics), on GET /metrics beside kserve's request_predict_seconds: from the
# data plane's infer call to its answer (input checks, waiting for an infer request, inference,
# output), the protocol's parsing and serialization excluded; OVMS's counterpart is ovms_request_time_us.
REQUEST_SECONDS = Histogram(
    "kserve_openvino_request_seconds",
    "Time the server took per answered inference request, protocol parsing excluded.",
    ["model_name"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class BinaryTensorDataPlane(DataPlane):
    async def infer(self, model_name: str, request: Any, headers: dict | None = None) -> Any:
        start = time.perf_counter()
        answer = await super().infer(model_name, request, headers)
        REQUEST_SECONDS.labels(model_name=model_name).observe(time.perf_counter() - start)
        return answer

    def decode_inference_request(self, body: Any, headers: dict, model_name: str) -> InferRequest:
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        return decode_rest_request(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER), model_name)

    async def model_metadata(self, model_name: str) -> dict:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        served = getattr(model, "served", None)
        if served is not None:
            metadata["versions"] = [str(served.version)]
            metadata["platform"] = PLATFORM
        return metadata


class LoopbackRESTServer(RESTServer):
    def __init__(self, host: str, *args: Any, limits: RequestLimits | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        limits = limits or RequestLimits.defaults()
        self.config.host = host
        self.config.http = guarded_http_protocol(limits)
        self.config.timeout_keep_alive = limits.keep_alive_seconds

    def _add_middlewares(self, app: Any) -> None:
        """kserve adds a timing middleware that formats two log lines per request; none here."""

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, _rejected(400))
        app.add_exception_handler(ModelNotFound, _rejected(404))
        # FastAPI's own 4xx (an unknown path, a body it could not read):
        # FastAPI's answer, plus the one log line every rejected request gets.
        app.add_exception_handler(RequestValidationError, _logged(request_validation_exception_handler))
        app.add_exception_handler(HTTPException, _logged(http_exception_handler))

    def _register_endpoints(self, app: FastAPI) -> None:
        # Registered first, so these take the infer paths and the versioned paths kserve answers with 501.
        app.include_router(model_router(self.dataplane, self.model_repository_extension))
        super()._register_endpoints(app)


def model_router(dataplane: DataPlane, model_repository_extension: Any) -> APIRouter:
    endpoints = V2Endpoints(dataplane, model_repository_extension)

    def check(model_name: str, model_version: str) -> None:
        check_version(dataplane.get_model_from_registry(model_name), model_name, model_version)

    async def metadata(model_name: str, model_version: str) -> ModelMetadataResponse:
        check(model_name, model_version)
        return await endpoints.model_metadata(model_name)

    async def ready(model_name: str, model_version: str) -> ModelReadyResponse:
        check(model_name, model_version)
        return await endpoints.model_ready(model_name)

    async def infer(raw_request: Request, raw_response: Response, model_name: str) -> Any:
        return await endpoints.infer(raw_request, raw_response, model_name, await raw_body(raw_request))

    async def versioned_infer(
        raw_request: Request, raw_response: Response, model_name: str, model_version: str
    ) -> Any:
        check(model_name, model_version)
        return await infer(raw_request, raw_response, model_name)

    router = APIRouter(prefix="/v2/models/{model_name}")
    # kserve's infer routes let FastAPI parse bodies by content type (JSON only as application/json);
    # these take the raw body, which binary.py reads as OVMS does.
    router.add_api_route("/infer", infer, response_model=None, methods=["POST"])
    versioned = "/versions/{model_version}"
    router.add_api_route(versioned, metadata, response_model=ModelMetadataResponse, methods=["GET"])
    router.add_api_route(f"{versioned}/ready", ready, response_model=ModelReadyResponse, methods=["GET"])
    router.add_api_route(f"{versioned}/infer", versioned_infer, response_model=None, methods=["POST"])
    return router


async def raw_body(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect:
        # As FastAPI answers a body it could not read (the HTTP guard may have refused it: no answer
        # reaches the client then, and _logged stays quiet).
        raise HTTPException(
            status_code=400, detail="the client went away before its request body arrived"
        ) from None


def _rejected(status: int) -> Any:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        log.warning("rejected a REST request (%d): %s", status, exc)
        return JSONResponse(status_code=status, content={"error": str(exc)})

    return handler


def _logged(handler: Any) -> Any:
    async def logged(request: Request, exc: Exception) -> Response:
        # A request the HTTP guard refused (and logged) shows up here as a disconnect: no second line.
        if not request.scope.get(REFUSED_SCOPE_KEY):
            if isinstance(exc, RequestValidationError):
                status, reason = 422, _validation_summary(exc)
            else:
                status, reason = getattr(exc, "status_code", 400), str(getattr(exc, "detail", exc))
            log.warning(
                "rejected a REST request (%d): %s %s: %s", status, request.method, request.url.path, reason
            )
        return await handler(request, exc)

    return logged


def _validation_summary(exc: RequestValidationError, limit: int = 300) -> str:
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors[:3]]
    text = "; ".join(parts) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class QuietExceptionToStatusInterceptor(ExceptionToStatusInterceptor):
    async def handle_exception(
        self, ex: Exception, request_or_iterator: Any, context: Any, method_name: str
    ) -> None:
        # kserve's InvalidInput and ModelNotFound both carry the client-facing message in .reason.
        if isinstance(ex, InvalidInput):
            code = StatusCode.INVALID_ARGUMENT
        elif isinstance(ex, ModelNotFound):
            code = StatusCode.NOT_FOUND
        else:
            return await super().handle_exception(ex, request_or_iterator, context, method_name)
        log.warning("rejected a gRPC request (%s): %s", code.name, ex)
        await context.abort(code, ex.reason)


class LoopbackGRPCServer(GRPCServer):
    def __init__(self, host: str, *args: Any, limits: RequestLimits | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._host = host
        self._limits = limits or RequestLimits.defaults()

    async def start(self, max_workers: int) -> None:
        # GRPCServer.start with the host and message limits as parameters; kserve's LoggingInterceptor
        # (an INFO line per call) is left out.
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(QuietExceptionToStatusInterceptor(),),
            options=[
                # Answers are small ([N, 21] floats); requests are refused above the REST body limit.
                ("grpc.max_send_message_length", self._limits.max_request_bytes),
                ("grpc.max_receive_message_length", self._limits.max_request_bytes),
                # A connection must complete its HTTP/2 handshake within the header timeout, and an
                # idle one (no call in flight) is closed (GOAWAY: clients reconnect) as REST's is.
                ("grpc.server_handshake_timeout_ms", int(self._limits.header_timeout_seconds * 1000)),
                ("grpc.max_connection_idle_ms", int(self._limits.keep_alive_seconds * 1000)),
                # Never share the port with another server silently (gRPC sets SO_REUSEPORT by default).
                ("grpc.so_reuseport", 0),
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(_grpc_address(self._host, self._port))
        await self._server.start()
        await self._server.wait_for_termination()


class LoopbackModelServer(ModelServer):
    """A single-process kserve ModelServer (REST + gRPC) listening on ``host`` only."""

    def __init__(
        self,
        host: str,
        http_port: int,
        grpc_port: int,
        grace_period: int = 5,
        limits: RequestLimits | None = None,
    ):
        super().__init__(
            http_port=http_port,
            grpc_port=grpc_port,
            workers=1,
            enable_grpc=True,
            enable_docs_url=False,
            enable_latency_logging=False,
            access_log_format=None,
            grace_period=grace_period,
            predictor_config=PredictorConfig(predictor_host=None),
            ssl_certfile=None,
            ssl_keyfile=None,
        )
        self.host = host
        self.limits = limits or RequestLimits.defaults()
        self.dataplane = BinaryTensorDataPlane(model_registry=self.registered_models)

    def start(self, models: list[BaseKServeModel]) -> None:
        # ModelServer.start for one REST worker, with our REST/gRPC server classes.
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = LoopbackRESTServer(
            self.host,
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            workers=1,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
            limits=self.limits,
        )
        self.servers.append(self._rest_server.start())
        self._grpc_server = LoopbackGRPCServer(
            self.host,
            self.grpc_port,
            self.dataplane,
            self.model_repository_extension,
            kwargs={},
            grace_period=self.grace_period,
            limits=self.limits,
        )
        self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())


def _grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
