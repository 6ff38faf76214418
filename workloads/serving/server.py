"""The local model server process: KServe v2 (REST + gRPC) over OpenVINO for an OVMS repository.

    python -m workloads.serving.server --model-repository artifacts/models --model-name bone-marrow \
        --precisions fp32,int8 --host 127.0.0.1 --http-port 8000 --grpc-port 8001 \
        --performance-hint THROUGHPUT --num-streams 0 --inference-threads 0 --nireq 0

Serves ``<model-name>-<precision>`` (latest version of each) until SIGTERM/SIGINT. ``local.py``
runs it in the background for ``invoke up --target local``, with a random start token in
``BMC_SERVER_INSTANCE``: the server lists it among the extensions of its V2 server metadata
(``GET /v2`` → ``"bmc-instance/<token>"``), so ``local.py`` can tell its own server from any other
process on the port or behind a copied pid file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openvino as ov
from PIL import Image

from contracts.errors import ServingError, ToolkitError
from workloads.serving.kserve_server import (
    BinaryTensorDataPlane,
    LoopbackModelServer,
    configure_quiet_logging,
)
from workloads.serving.limits import RequestLimits
from workloads.serving.local import INSTANCE_ENV, INSTANCE_EXTENSION_PREFIX
from workloads.serving.model import OpenVINOModel, RuntimeSettings
from workloads.serving.repository import find_models
from workloads.telemetry import opt_out_of_openvino_telemetry

__all__ = ["OpenVINOModel", "main"]

log = logging.getLogger("workloads.serving")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workloads.serving.server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model-repository", required=True, type=Path)
    parser.add_argument("--model-name", default="bone-marrow")
    parser.add_argument("--precisions", default="fp32,int8", help="comma-separated, e.g. fp32,int8")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--performance-hint", choices=["THROUGHPUT", "LATENCY"], default="THROUGHPUT")
    parser.add_argument("--num-streams", type=_non_negative, default=0, help="0 = from the hint")
    parser.add_argument("--inference-threads", type=_non_negative, default=0, help="0 = from the hint")
    parser.add_argument("--nireq", type=_non_negative, default=0, help="0 = OpenVINO's optimal number")
    # --max-request-bytes, --max-batch-size, --max-image-pixels, --max-request-pixels,
    # --header-timeout-seconds, --body-timeout-seconds, --keep-alive-seconds (serving.*)
    RequestLimits.add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    settings = RuntimeSettings(args.performance_hint, args.num_streams, args.inference_threads, args.nireq)
    limits = RequestLimits.from_args(args)
    # Pillow's own bomb check backs up the header check in inputs.py; images between the limit and
    # twice it would only warn, and inputs.py refuses them with a clearer message anyway.
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    try:
        if not precisions:
            raise ServingError("--precisions must name at least one precision, e.g. fp32,int8")
        served = find_models(args.model_repository, args.model_name, precisions)
        opt_out_of_openvino_telemetry()
        configure_quiet_logging()
        core = ov.Core()
        models = [OpenVINOModel(model, settings, core, limits) for model in served]
        for model in models:
            model.load()
    except ToolkitError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    # kserve 0.21 still uses FastAPI's ORJSONResponse; the deprecation notice says nothing to our users.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    log.info(
        "serving %s · REST http://%s:%d · gRPC %s:%d",
        ", ".join(m.name for m in models),
        args.host,
        args.http_port,
        args.host,
        args.grpc_port,
    )
    server = LoopbackModelServer(args.host, args.http_port, args.grpc_port, limits=limits)
    token = os.environ.get(INSTANCE_ENV, "")
    if token:
        server.dataplane = InstanceDataPlane(server.registered_models, token)
    server.start(models)
    log.info("model server stopped")
    return 0


class InstanceDataPlane(BinaryTensorDataPlane):
    """The server metadata names this server's start token among its extensions."""

    def __init__(self, model_registry: Any, token: str):
        super().__init__(model_registry=model_registry)
        self._instance = INSTANCE_EXTENSION_PREFIX + token

    def metadata(self) -> dict:
        metadata = dict(super().metadata())
        metadata["extensions"] = [*metadata.get("extensions", []), self._instance]
        return metadata


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
