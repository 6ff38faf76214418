"""The boundary to a cluster: server-side apply, get and delete through the Kubernetes dynamic client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from contracts.errors import DeployError

FIELD_MANAGER = "bmc-toolkit"


class ClusterApi(Protocol):
    def apply(self, document: dict[str, Any]) -> dict[str, Any]: ...

    def get(
        self, *, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None: ...

    def delete(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> bool: ...


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    try:
        if not isinstance(body, str | bytes | bytearray):
            raise TypeError("no JSON body")
        message = json.loads(body)["message"]
    except (TypeError, ValueError, KeyError):
        message = getattr(exc, "reason", None) or str(exc)
    return " ".join(str(message).split())


class DynamicClusterApi:
    """A real cluster, reached with a kubeconfig file (and optionally one of its contexts)."""

    def __init__(self, *, kubeconfig: Path, context: str | None = None) -> None:
        from kubernetes import config as kube_config
        from kubernetes import dynamic
        from kubernetes.config.config_exception import ConfigException

        if not Path(kubeconfig).is_file():
            raise DeployError(f"kubeconfig {kubeconfig} not found; create the cluster first")
        try:
            api_client = kube_config.new_client_from_config(config_file=str(kubeconfig), context=context)
            self._api_client = api_client
            self._client = dynamic.DynamicClient(api_client)
        except ConfigException as exc:
            raise DeployError(f"kubeconfig {kubeconfig} is unusable: {' '.join(str(exc).split())}") from None
        except Exception as exc:  # connection refused, TLS, DNS: the API server is not reachable
            raise DeployError(
                f"cannot reach the Kubernetes API of {kubeconfig}: {_api_message(exc)}"
            ) from None

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise DeployError(f"the cluster does not serve {kind} in {api_version}") from None

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        meta = document["metadata"]
        resource = self._resource(document["apiVersion"], document["kind"])
        try:
            result = resource.server_side_apply(
                body=document,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                query_params=[("fieldValidation", "Strict")],
            )
        except ApiException as exc:
            raise DeployError(
                f"applying {document['kind']}/{meta['name']} failed ({exc.status}): {_api_message(exc)}"
            ) from None
        return result.to_dict()

    def get(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise DeployError(f"reading {kind}/{name} failed ({exc.status}): {_api_message(exc)}") from None

    def delete(self, *, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise DeployError(f"deleting {kind}/{name} failed ({exc.status}): {_api_message(exc)}") from None
        return True

    def list(
        self, *, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]:
        """The objects of ``kind`` whose labels match ``label_selector`` (``k=v,k2=v2``)."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self._resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        except ApiException as exc:
            raise DeployError(f"listing {kind} failed ({exc.status}): {_api_message(exc)}") from None
        items: list[dict[str, Any]] = found.to_dict().get("items") or []
        return items

    def replace(self, document: dict[str, Any]) -> dict[str, Any]:
        """PUT ``document`` as read (its resourceVersion makes a concurrent change a 409, not a loss)."""
        from kubernetes.client.exceptions import ApiException

        meta = document["metadata"]
        try:
            result = self._resource(document["apiVersion"], document["kind"]).replace(
                body=document, name=meta["name"], namespace=meta.get("namespace")
            )
        except ApiException as exc:
            raise DeployError(
                f"updating {document['kind']}/{meta['name']} failed ({exc.status}): {_api_message(exc)}"
            ) from None
        return result.to_dict()

    def job_log(self, *, name: str, namespace: str, container: str) -> str:
        """The log of ``container`` in the newest pod of Job ``name`` (label job-name=<name>)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self._api_client)
        try:
            pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
            if not pods:
                raise DeployError(f"Job {name} has no pod in namespace {namespace}")
            newest = max(pods, key=lambda p: str(p.metadata.creation_timestamp or "") if p.metadata else "")
            pod_name = newest.metadata.name if newest.metadata else None
            if not pod_name:
                raise DeployError(f"the newest pod of Job {name} has no name")
            # Raw bytes: the client would otherwise json.loads a log that happens to be one JSON value.
            # With _preload_content=False the call returns the urllib3 response, not the str it declares.
            response: Any = core.read_namespaced_pod_log(
                pod_name, namespace, container=container, _preload_content=False
            )
            return response.data.decode("utf-8", errors="replace")
        except ApiException as exc:
            raise DeployError(
                f"reading the log of Job {name} failed ({exc.status}): {_api_message(exc)}"
            ) from None
