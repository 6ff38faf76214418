"""The vSphere Automation REST tagging API (/rest/com/vmware/cis/...), read side."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from infra.eksa.errors import VsphereError, VsphereLoginError, VsphereTlsError, VsphereUnreachableError

SESSION_HEADER = "vmware-api-session-id"


@dataclass(frozen=True)
class Tag:
    category: str
    name: str


class TaggingClient:
    """Logs in with basic auth on first use; the session id then authenticates every call."""

    def __init__(
        self, *, base_url: str, verify: ssl.SSLContext, username: str, password: str, timeout: float
    ) -> None:
        self._http = httpx.Client(base_url=base_url, verify=verify, timeout=timeout)
        self._auth = (username, password)
        self._session: str | None = None
        self._names: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(httpx.HTTPError):  # the session expires on its own
                self._http.delete("/com/vmware/cis/session", headers={SESSION_HEADER: self._session})
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None) -> Any:
        """One authenticated call; returns the ``value`` of the response."""
        if self._session is None:
            self._session = self._call("POST", "/com/vmware/cis/session", auth=self._auth)
        return self._call(method, path, json=json, params=params, headers={SESSION_HEADER: self._session})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc):
                raise VsphereTlsError(f"TLS with the vSphere REST API failed: {exc}") from None
            raise VsphereUnreachableError(f"cannot reach the vSphere REST API: {exc}") from None
        except httpx.HTTPError as exc:
            raise VsphereError(f"vSphere REST API call {method} {path} failed: {exc}") from None
        if response.status_code == 401:
            raise VsphereLoginError("the vSphere REST API rejected the login; check the vCenter credentials")
        if response.status_code == 403:
            raise VsphereError(f"the vCenter user may not call {method} {path} (tagging privileges)")
        if response.status_code >= 400:
            raise VsphereError(f"vSphere REST API {method} {path} answered HTTP {response.status_code}")
        if not response.content:
            return None
        return response.json().get("value")

    def _lookup(self, kind: str, object_id: str) -> dict[str, Any]:
        key = f"{kind}/{object_id}"
        if key not in self._names:
            self._names[key] = self.request("GET", f"/com/vmware/cis/tagging/{kind}/id:{object_id}") or {}
        return self._names[key]

    def attached_tags(self, objects: Sequence[tuple[str, str]]) -> dict[str, tuple[Tag, ...]]:
        """Tags on each (type, moid), e.g. ("VirtualMachine", "vm-42"), keyed by moid."""
        if not objects:
            return {}
        answer = self.request(
            "POST",
            "/com/vmware/cis/tagging/tag-association",
            params={"~action": "list-attached-tags-on-objects"},
            json={"object_ids": [{"type": kind, "id": moid} for kind, moid in objects]},
        )
        result: dict[str, tuple[Tag, ...]] = {moid: () for _kind, moid in objects}
        for entry in answer or []:
            moid = entry["object_id"]["id"]
            tags = []
            for tag_id in entry.get("tag_ids") or []:
                tag = self._lookup("tag", tag_id)
                category = self._lookup("category", tag.get("category_id", ""))
                tags.append(Tag(category=category.get("name", ""), name=tag.get("name", "")))
            result[moid] = tuple(sorted(tags, key=lambda t: (t.category, t.name)))
        return result
