"""The one vSphere client: pinned TLS, login from the environment, property collection, tagging."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from infra.eksa.errors import (
    VsphereError,
    VsphereLoginError,
    VspherePermissionError,
    VsphereTlsError,
    VsphereUnreachableError,
)
from infra.eksa.tagging import TaggingClient
from infra.eksa.tls import insecure_context, refused_certificate, verified_context

# The variables eksctl anywhere reads itself; nothing else supplies credentials.
USERNAME_ENV = "EKSA_VSPHERE_USERNAME"
PASSWORD_ENV = "EKSA_VSPHERE_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials:
    env = os.environ if environ is None else environ
    username, password = env.get(USERNAME_ENV, ""), env.get(PASSWORD_ENV, "")
    if not username or not password:
        raise VsphereLoginError(
            f"set {USERNAME_ENV} and {PASSWORD_ENV} to the vCenter user EKS Anywhere uses"
        )
    return Credentials(username=username, password=password)


def split_server(server: str) -> tuple[str, int]:
    """``host`` or ``host:port`` (``[v6]:port``) → (host, port), port 443 by default."""
    if not server:
        raise VsphereError("vsphere.server is not set; give the vCenter host name or address")
    host, sep, port = server.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.endswith("]")):
        return host.strip("[]"), int(port)
    return server.strip("[]"), 443


class VsphereClient:
    """A logged-in vCenter session; use as a context manager (it logs out on exit).

    TLS is verified by pinning: the certificate's SHA-1 must equal ``thumbprint`` before the
    password is sent, and every later connection (SOAP and REST) trusts only that certificate.
    ``insecure=True`` skips all of it and is meant for labs.
    """

    def __init__(
        self,
        *,
        server: str,
        credentials: Credentials,
        thumbprint: str = "",
        insecure: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port = split_server(server)
        self._credentials = credentials
        self._thumbprint = thumbprint
        self._insecure = insecure
        self._timeout = timeout
        self._si: Any = None
        self._context: ssl.SSLContext | None = None
        self._tagging: TaggingClient | None = None

    def __enter__(self) -> VsphereClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def username(self) -> str:
        return self._credentials.username

    def connect(self) -> None:
        if self._insecure:
            self._context = insecure_context()
        elif not self._thumbprint:
            raise VsphereTlsError(
                "vsphere.thumbprint is empty: set it to the vCenter certificate's SHA-1 fingerprint "
                "(or set vsphere.insecure=true for a lab)"
            )
        else:
            self._context = verified_context(
                host=self.host, port=self.port, thumbprint=self._thumbprint, timeout=self._timeout
            )
        try:
            self._si = SmartConnect(
                host=self.host,
                port=self.port,
                user=self._credentials.username,
                pwd=self._credentials.password,
                sslContext=self._context,
                disableSslCertValidation=self._insecure,
                httpConnectionTimeout=self._timeout,
            )
        except vim.fault.InvalidLogin:
            raise VsphereLoginError(
                f"vCenter {self.host} rejected the login of {self.username!r}; "
                f"check {USERNAME_ENV} / {PASSWORD_ENV}"
            ) from None
        except vim.fault.NoPermission as exc:
            raise VspherePermissionError(
                f"{self.username!r} may not log in to {self.host}: missing {exc.privilegeId or 'a privilege'}"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise refused_certificate(self.host, self.port, exc) from None
        except ssl.SSLError as exc:
            raise VsphereTlsError(
                f"TLS with vCenter {self.host}:{self.port} failed: {exc.reason or exc}"
            ) from None
        except OSError as exc:
            raise VsphereUnreachableError(
                f"cannot reach vCenter at {self.host}:{self.port}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        except vmodl.MethodFault as exc:
            # pyVmomi's stubs omit MethodFault.msg, which VmomiSupport defines on every fault.
            message = exc.msg  # type: ignore[attr-defined]
            raise VsphereError(
                f"vCenter {self.host} refused the session: {message or type(exc).__name__}"
            ) from None

    def close(self) -> None:
        if self._tagging is not None:
            self._tagging.close()
            self._tagging = None
        if self._si is not None:
            with contextlib.suppress(OSError, vmodl.MethodFault):  # the session is going away either way
                Disconnect(self._si)
            self._si = None

    @property
    def content(self) -> Any:
        if self._si is None:
            raise VsphereError("the vSphere client is not connected")
        return self._si.RetrieveContent()

    @property
    def version(self) -> str:
        return str(self.content.about.version)

    @contextmanager
    def container_view(self, types: Sequence[type]) -> Iterator[Any]:
        """A recursive ContainerView over the whole inventory, destroyed on exit."""
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, list(types), True)
        try:
            yield view
        finally:
            view.Destroy()

    def collect(self, kind: type, properties: Sequence[str]) -> list[tuple[Any, dict[str, Any]]]:
        """Every object of ``kind`` with the given properties, in one paged PropertyCollector call."""
        with self.container_view([kind]) as view:
            traversal = vmodl.query.PropertyCollector.TraversalSpec(
                name="view", path="view", skip=False, type=vim.view.ContainerView
            )
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[
                    vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])
                ],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=list(properties))],
            )
            collector = self.content.propertyCollector
            results = []
            page = collector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
            while page is not None:
                for item in page.objects:
                    results.append((item.obj, {prop.name: prop.val for prop in item.propSet or []}))
                page = collector.ContinueRetrievePropertiesEx(page.token) if page.token else None
            return results

    def has_privilege_on_entities(self, entities: Sequence[Any], privileges: Sequence[str]) -> list[Any]:
        """AuthorizationManager.HasPrivilegeOnEntities for this session (one EntityPrivilege each)."""
        session = self.content.sessionManager.currentSession
        return list(
            self.content.authorizationManager.HasPrivilegeOnEntities(
                entity=list(entities), sessionId=session.key, privId=list(privileges)
            )
        )

    def missing_privileges(self, wanted: Mapping[Any, Sequence[str]]) -> list[tuple[Any, str]]:
        """(entity, privilege) pairs this user lacks, for ``{entity: [privilege, …]}``."""
        missing: list[tuple[Any, str]] = []
        for entity, privileges in wanted.items():
            try:
                answers = self.has_privilege_on_entities([entity], privileges)
            except vim.fault.NoPermission as exc:
                raise VspherePermissionError(
                    f"{self.username!r} may not check privileges: missing {exc.privilegeId}"
                ) from None
            for answer in answers:
                missing.extend(
                    (entity, item.privId) for item in answer.privAvailability or [] if not item.isGranted
                )
        return missing

    @property
    def tagging(self) -> TaggingClient:
        """The vSphere Automation REST tagging API, over the same pinned TLS context."""
        if self._tagging is None:
            if self._context is None:
                raise VsphereError("the vSphere client is not connected")
            self._tagging = TaggingClient(
                base_url=f"https://{self.host}:{self.port}/rest",
                verify=self._context,
                username=self._credentials.username,
                password=self._credentials.password,
                timeout=self._timeout,
            )
        return self._tagging
