"""The bench pool's Kubernetes side through the real Kubernetes client, against an API server on loopback.

The server answers discovery, lists Nodes by label selector and reads/replaces the EKS Anywhere
``Cluster`` object with the API server's optimistic concurrency (a stale resourceVersion is a 409).
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from contracts.errors import DeployError
from workloads.deploy.bench_pool import EKSA_API_VERSION, scale_worker_group, wait_for_ready_node
from workloads.k8s.cluster_api import DynamicClusterApi

GROUP = "anywhere.eks.amazonaws.com"
CLUSTER_PATH = f"/apis/{EKSA_API_VERSION}/namespaces/default/clusters/onprem"
BENCH = {"bone-marrow.ml/pool": "bench"}


class ApiState:
    def __init__(self) -> None:
        self.nodes = [
            {"metadata": {"name": "w1", "labels": {"bone-marrow.ml/pool": "icelake"}}},
            {
                "metadata": {"name": "b1", "labels": BENCH},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
        ]
        self.cluster: dict[str, Any] = {
            "apiVersion": EKSA_API_VERSION,
            "kind": "Cluster",
            "metadata": {"name": "onprem", "namespace": "default", "resourceVersion": "41"},
            "spec": {
                "workerNodeGroupConfigurations": [
                    {"name": "icelake", "count": 2},
                    {"name": "bench", "count": 0},
                ]
            },
            "status": {"observedGeneration": 3},
        }
        self.puts: list[dict[str, Any]] = []
        self.bump_before_put = False  # someone else changes the Cluster between our read and write


def _resources(group_version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}


def handler(state: ApiState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/version":
                return self._send(200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0"})
            if url.path == "/api":
                return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
            if url.path == "/apis":
                version = {"groupVersion": EKSA_API_VERSION, "version": "v1alpha1"}
                group = {"name": GROUP, "versions": [version], "preferredVersion": version}
                return self._send(200, {"kind": "APIGroupList", "groups": [group]})
            if url.path == "/api/v1":
                node = {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node"}
                return self._send(200, _resources("v1", [{**node, "verbs": ["get", "list"]}]))
            if url.path == f"/apis/{EKSA_API_VERSION}":
                cluster = {
                    "name": "clusters",
                    "singularName": "cluster",
                    "namespaced": True,
                    "kind": "Cluster",
                }
                return self._send(
                    200, _resources(EKSA_API_VERSION, [{**cluster, "verbs": ["get", "update"]}])
                )
            if url.path == "/api/v1/nodes":
                (selector,) = parse_qs(url.query)["labelSelector"]
                wanted = dict(pair.split("=", 1) for pair in selector.split(","))
                items = [n for n in state.nodes if wanted.items() <= n["metadata"]["labels"].items()]
                return self._send(
                    200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}
                )
            if url.path == CLUSTER_PATH:
                return self._send(200, state.cluster)
            return self._send(404, {"kind": "Status", "message": f"{url.path} not found", "code": 404})

        def do_PUT(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != CLUSTER_PATH:
                return self._send(404, {"kind": "Status", "message": "not found", "code": 404})
            if state.bump_before_put:
                state.cluster["metadata"]["resourceVersion"] = "99"
            if body["metadata"].get("resourceVersion") != state.cluster["metadata"]["resourceVersion"]:
                message = 'Operation cannot be fulfilled on clusters "onprem": the object has been modified'
                return self._send(409, {"kind": "Status", "message": message, "code": 409})
            state.puts.append(copy.deepcopy(body))
            body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
            body["status"] = state.cluster["status"]
            state.cluster = body
            return self._send(200, body)

    return Handler


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[ApiState, Path]]:
    state = ApiState()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
                "users": [{"name": "u", "user": {"token": "test"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    try:
        yield state, kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def test_nodes_listed_by_label_and_the_ready_one_found(api_server: tuple[ApiState, Path]) -> None:
    _state, kubeconfig = api_server
    api = DynamicClusterApi(kubeconfig=kubeconfig)
    listed = api.list(
        api_version="v1", kind="Node", namespace=None, label_selector="bone-marrow.ml/pool=bench"
    )
    assert [n["metadata"]["name"] for n in listed] == ["b1"]
    lines: list[str] = []
    assert wait_for_ready_node(api, labels=BENCH, progress=lines.append) == "b1"


def test_the_worker_group_count_is_replaced_under_the_read_version(api_server: tuple[ApiState, Path]) -> None:
    state, kubeconfig = api_server
    api = DynamicClusterApi(kubeconfig=kubeconfig)
    scale_worker_group(api, cluster_name="onprem", group="bench", nodes=1, progress=lambda _l: None)
    (put,) = state.puts
    assert put["metadata"]["resourceVersion"] == "41"
    assert "status" not in put
    assert put["spec"]["workerNodeGroupConfigurations"] == [
        {"name": "icelake", "count": 2},
        {"name": "bench", "count": 1},
    ]
    # Already at the wanted count: nothing is written.
    scale_worker_group(api, cluster_name="onprem", group="bench", nodes=1, progress=lambda _l: None)
    assert len(state.puts) == 1
    # A change between the read and the write is refused by the server, in one line.
    state.bump_before_put = True
    with pytest.raises(DeployError) as info:
        scale_worker_group(api, cluster_name="onprem", group="bench", nodes=0, progress=lambda _l: None)
    assert str(info.value) == (
        'updating Cluster/onprem failed (409): Operation cannot be fulfilled on clusters "onprem": '
        "the object has been modified"
    )
    with pytest.raises(DeployError, match=r"no Cluster default/elsewhere in the cluster"):
        scale_worker_group(api, cluster_name="elsewhere", group="bench", nodes=1, progress=lambda _l: None)
