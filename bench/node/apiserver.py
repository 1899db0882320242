"""The loopback control plane (control_plane role) as level kube sees it: a client, a pod watch,
and a client certificate for each kubelet.

Standard library only (http.client, ssl): the agent runs on lab nodes with what the node's
Python has. The API server's certificate is checked against the control plane's CA (its SAN
holds 127.0.0.1); the agent authenticates with the admin certificate the role made, and each
kubelet with its own (CN system:node:<name>, O system:nodes), which the agent makes with
openssl and the role's CA, so the Node authorizer and NodeRestriction treat it as a real node.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stacks
from bench.errors import ComponentError, InputError

NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


class ApiError(ComponentError):
    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def description_path(stack: stacks.Stack) -> Path:
    """/etc/hopbench/control-plane.json, beside the stack descriptions (control_plane role)."""
    return Path(stack.description_path).parent.parent / "control-plane.json"


@dataclass(frozen=True)
class ControlPlane:
    server: str
    version: str
    etcd_version: str
    ca: str
    ca_key: str
    client_cert: str
    client_key: str
    version_cmds: dict[str, list[str]]

    @classmethod
    def load(cls, path: Path) -> ControlPlane:
        try:
            d = json.loads(path.read_text())
            return cls(
                server=str(d["server"]),
                version=str(d["version"]),
                etcd_version=str(d.get("etcd_version", "")),
                ca=str(d["ca"]),
                ca_key=str(d["ca_key"]),
                client_cert=str(d["client_cert"]),
                client_key=str(d["client_key"]),
                version_cmds={k: [str(a) for a in v] for k, v in (d.get("version_cmds") or {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: not a control plane description ({type(exc).__name__}: {exc})") from exc

    @property
    def host_port(self) -> tuple[str, int]:
        u = urllib.parse.urlsplit(self.server)
        return u.hostname or "127.0.0.1", u.port or 443


def issue_node_cert(cp: ControlPlane, node_name: str, out: Path) -> tuple[Path, Path]:
    """A client certificate for kubelet `node_name`, signed by the control plane's CA (1 day)."""
    if not NODE_NAME.match(node_name):
        raise InputError(f"kubelet node name {node_name!r}: expected a DNS-1123 subdomain")
    out.mkdir(parents=True, exist_ok=True)
    key, csr, crt = out / "kubelet-client.key", out / "kubelet-client.csr", out / "kubelet-client.crt"
    subject = f"/O=system:nodes/CN=system:node:{node_name}"
    steps = [
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", subject,
         "-addext", "keyUsage=critical,digitalSignature", "-addext", "extendedKeyUsage=clientAuth"],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", cp.ca, "-CAkey", cp.ca_key, "-set_serial",
         str(time.time_ns()), "-copy_extensions", "copyall", "-days", "1", "-out", str(crt)],
    ]  # fmt: skip
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ApiError(f"openssl {argv[1]} for {node_name}: {proc.stderr.strip()[-400:]}")
    key.chmod(0o600)
    return crt, key


def kubeconfig(cp: ControlPlane, cert: Path, key: Path, user: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "hopbench", "cluster": {"server": cp.server, "certificate-authority": cp.ca}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "hopbench", "context": {"cluster": "hopbench", "user": user}}],
            "current-context": "hopbench",
        },
        indent=2,
    )


class ApiClient:
    """JSON requests to the API server, one keep-alive connection per thread."""

    def __init__(self, cp: ControlPlane, timeout_s: float = 30.0) -> None:
        self.cp, self.timeout_s = cp, timeout_s
        self.tls = ssl.create_default_context(cafile=cp.ca)
        self.tls.load_cert_chain(cp.client_cert, cp.client_key)
        self.local = threading.local()

    def connect(self, timeout_s: float | None) -> http.client.HTTPSConnection:
        host, port = self.cp.host_port
        return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=self.tls)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        ok: tuple[int, ...] = (200, 201, 202),
        content_type: str = "application/json",
    ) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.connect(self.timeout_s)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.local.conn = None
            raise ApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            out = json.loads(raw) if raw else {}
        except ValueError:
            out = {"message": raw[:300].decode(errors="replace")}
        if resp.status not in ok:
            reason = out.get("reason", "") if isinstance(out, dict) else ""
            msg = out.get("message", "") if isinstance(out, dict) else ""
            raise ApiError(f"{method} {path}: HTTP {resp.status} {reason}: {msg}"[:600], resp.status, reason)
        return out

    def ensure(self, path: str, body: dict[str, Any]) -> None:
        """Create the object unless it exists (409 Conflict)."""
        try:
            self.request("POST", path, body)
        except ApiError as exc:
            if exc.status != 409:
                raise

    def close(self) -> None:
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            conn.close()
            self.local.conn = None


Handler = Callable[[str, dict[str, Any], int], None]


class PodWatch:
    """Watches the pods of a namespace that match a label selector, on its own thread; calls
    `handler(type, pod, monotonic_ns)` for each event as it arrives (ADDED, MODIFIED, DELETED;
    SYNC for each pod a re-list finds after the watch broke, GONE for one it no longer finds)."""

    def __init__(self, api: ApiClient, namespace: str, selector: str, handler: Handler) -> None:
        self.api, self.namespace, self.selector, self.handler = api, namespace, selector, handler
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.conn: http.client.HTTPSConnection | None = None
        self.error = ""
        self.relists = 0
        self.known: set[str] = set()
        self.thread = threading.Thread(target=self._loop, name=f"watch-{selector}", daemon=True)

    def _path(self, **params: str) -> str:
        q = urllib.parse.urlencode({"labelSelector": self.selector, **params})
        return f"/api/v1/namespaces/{self.namespace}/pods?{q}"

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(30):
            raise ApiError(f"pod watch {self.selector}: not started within 30 s: {self.error}")

    def _list(self) -> str:
        out = self.api.request("GET", self._path())
        now = time.monotonic_ns()
        names = set()
        for pod in out.get("items") or []:
            names.add(pod["metadata"]["name"])
            self.handler("SYNC", pod, now)
        for gone in self.known - names:
            self.handler("GONE", {"metadata": {"name": gone}}, now)
        self.known = names
        return str(out["metadata"]["resourceVersion"])

    def _loop(self) -> None:
        version = ""
        while not self.stopping.is_set():
            try:
                if not version:
                    version = self._list()
                    if self.ready.is_set():
                        self.relists += 1
                conn = self.conn = self.api.connect(None)
                conn.request("GET", self._path(watch="1", resourceVersion=version, allowWatchBookmarks="true",
                                                 timeoutSeconds="600"))  # fmt: skip
                resp = conn.getresponse()
                if resp.status != 200:
                    raise ApiError(f"watch: HTTP {resp.status}: {resp.read()[:300]!r}", resp.status)
                self.ready.set()
                while not self.stopping.is_set():
                    line = resp.readline()
                    if not line:
                        break  # the server ended the watch (its timeout): watch again from `version`
                    now = time.monotonic_ns()
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    kind = event.get("type")
                    if kind == "ERROR":  # 410 Gone: the version is too old; list again
                        version = ""
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if kind == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if kind == "DELETED":
                        self.known.discard(name)
                    else:
                        self.known.add(name)
                    self.handler(str(kind), obj, now)
            except (OSError, http.client.HTTPException, ValueError, KeyError, ApiError) as exc:
                if self.stopping.is_set():
                    break
                self.error = f"{type(exc).__name__}: {exc}"
                version = ""  # list again: events may have been missed
                self.stopping.wait(0.2)
            finally:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None

    def stop(self) -> None:
        self.stopping.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(2)
        self.thread.join(timeout=10)
