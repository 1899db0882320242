"""The components' own account of a lifecycle: OpenTelemetry traces (scenario `tracing: true`).

Two halves, both in the agent:

- **Our client's spans.** Each lifecycle is one trace: a root span `lifecycle` for the pod and
  a client span per CRI call, whose context goes to the runtime in a W3C `traceparent` header
  (gRPC metadata), as kubelet sends it. A runtime that traces (containerd's and CRI-O's gRPC
  servers read the header) makes its server span a child of ours, so its own spans nest under
  the call we timed. A gRPC client interceptor (`Tracer.intercept`) adds the header and times
  the span; the lifecycle's trace comes from a thread-local the schedule sets (`Tracer.lifecycle`).
- **A receiver.** An OTLP/gRPC trace service on the node's loopback (`Receiver`), where the
  traced stack instances export (their description names the endpoint: the `+traced` twins of
  ansible/group_vars/all/stacks.yml). Every span that arrives is one Span event.

Span events carry ids as hex, times as Unix ns (the exporters' clock: CLOCK_REALTIME, as ours),
the service (resource `service.name`) and a few attributes as JSON. The controller keeps them
in spans.jsonl and spans.parquet and joins them to the samples by trace (bench.controller.spans).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.errors import ComponentError
from bench.messages import Span

SERVICE = "hopbench"
# OTLP span kinds (trace.proto SpanKind) by the names the reports use.
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
# Attributes worth keeping (the rest stay out of the results: sizes, and no secrets in results).
KEPT_ATTRIBUTES = (
    "rpc.method",
    "rpc.service",
    "rpc.grpc.status_code",
    "sandbox.id",
    "container.id",
    "pod.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.namespace.name",
    "k8s.container.name",
    "code.function",
    "hopbench.op",
)
# How long the receiver waits for the daemons' last batches after the run's last call: the
# traced instances export every 500 ms (OTEL_BSP_SCHEDULE_DELAY in their roles), CRI-O every 5 s.
FLUSH_WAIT_S = 6.0


def new_id(nbytes: int) -> str:
    """A random trace (16 bytes) or span (8 bytes) id as lowercase hex, never all zero."""
    while True:
        raw = os.urandom(nbytes)
        if any(raw):
            return raw.hex()


def traceparent(trace_id: str, span_id: str) -> str:
    """The W3C trace context header of a sampled span."""
    return f"00-{trace_id}-{span_id}-01"


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, which)
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


# Where a lifecycle runs: the fields a Span shares with a Sample (bench.node.levels.traced_fields).
Where = dict[str, Any]


class Tracer:
    """Our client's side: a trace per lifecycle, a span per CRI call with its traceparent."""

    def __init__(self, emit: Callable[[Span], None]) -> None:
        self.emit = emit
        self.local = threading.local()
        self.spans = 0
        self.lock = threading.Lock()
        # Per stack instance, the trace ids of the lifecycles that called it with our traceparent.
        self.by_stack: dict[str, set[str]] = {}

    @contextlib.contextmanager
    def lifecycle(self, where: Where, level: str = "") -> Iterator[str]:
        """One lifecycle of `level` as a trace: its root span `lifecycle` ends when the block does."""
        trace_id, root = new_id(16), new_id(8)
        self.local.current = (trace_id, root, where, level)
        self.local.pending = []
        start = time.time_ns()
        try:
            yield trace_id
        finally:
            end = time.time_ns()
            self.local.current = None
            # The client spans go out now, after the lifecycle: never inside a timed call.
            pending, self.local.pending = self.local.pending, []
            for args in pending:
                self._span(*args)
            self._span(where, level, trace_id, root, "", "lifecycle", "internal", start, end, {}, 0)

    def _span(
        self,
        where: Where,
        level: str,
        trace_id: str,
        span_id: str,
        parent: str,
        name: str,
        kind: str,
        start: int,
        end: int,
        attrs: dict[str, Any],
        status: int,
    ) -> None:
        with self.lock:
            self.spans += 1
        self.emit(
            Span(
                **where,
                service=SERVICE,
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=name,
                span_kind=kind,
                start_unix_ns=start,
                end_unix_ns=end,
                status=status,
                attributes=json.dumps(attrs, sort_keys=True),
                level=level,
            )
        )

    def intercept(self, channel: grpc.Channel) -> grpc.Channel:
        """`channel` with our client spans and the traceparent header on every unary call."""
        return grpc.intercept_channel(channel, _Interceptor(self))


class _Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        current = getattr(self.tracer.local, "current", None)
        if current is None:  # outside a lifecycle (set-up, clean-up): no trace
            return continuation(details, request)
        trace_id, parent, where, level = current
        if level != "probe":  # a lifecycle whose runtime got our traceparent: its spans are awaited
            with self.tracer.lock:
                self.tracer.by_stack.setdefault(where["stack"], set()).add(trace_id)
        span_id = new_id(8)
        metadata = [*(details.metadata or ()), ("traceparent", traceparent(trace_id, span_id))]
        details = _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        method = str(details.method).rsplit("/", 1)[-1]
        start = time.time_ns()
        outcome = continuation(details, request)
        end = time.time_ns()
        code = outcome.code() if hasattr(outcome, "code") else None
        status = 0 if code in (None, grpc.StatusCode.OK) else 2
        attrs = {"rpc.method": method, "rpc.service": str(details.method).rsplit("/", 2)[-2]}
        # Kept until the lifecycle ends (Tracer.lifecycle emits it): the call is still being timed.
        self.tracer.local.pending.append(
            (where, level, trace_id, span_id, parent, method, "client", start, end, attrs, status)
        )
        return outcome


class _Details(
    collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """A call's details with our metadata (grpc's own recipe for a client interceptor)."""


class _Service(otlp_grpc.TraceServiceServicer):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def Export(self, request: otlp.ExportTraceServiceRequest, context: Any) -> otlp.ExportTraceServiceResponse:  # noqa: N802
        self.receiver.take(request)
        return otlp.ExportTraceServiceResponse()


def _loopback(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
        raise ComponentError(f"trace receiver: endpoint {endpoint!r}: expected a loopback host:port")
    return host.strip("[]"), int(port)


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    """OTLP/HTTP: POST /v1/traces, a protobuf ExportTraceServiceRequest (gzip or not)."""

    receiver: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
        if self.path.rstrip("/") != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        try:
            request = otlp.ExportTraceServiceRequest.FromString(body)
        except Exception:  # noqa: BLE001 - a body that is not OTLP: refused, never raised
            self.send_error(400, "expected a protobuf ExportTraceServiceRequest")
            return
        self.receiver.take(request)
        reply = otlp.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return


class Receiver:
    """The run's OTLP trace receiver on loopback: gRPC on `endpoint` (CRI-O and the kubelet export
    only so) and, with `http_endpoint`, OTLP/HTTP (containerd and dockerd export so here: an HTTP
    exporter holds no connection whose reconnect back-off could outlast the gap between runs).
    Every span that arrives becomes a Span event with the run's id and node."""

    def __init__(
        self, endpoint: str, run_id: str, node: str, emit: Callable[[Span], None], http_endpoint: str = ""
    ) -> None:
        _loopback(endpoint)
        self.http_address = _loopback(http_endpoint) if http_endpoint else None
        self.endpoint, self.http_endpoint = endpoint, http_endpoint
        self.run_id, self.node, self.emit = run_id, node, emit
        self.server: grpc.Server | None = None
        self.http: http.server.ThreadingHTTPServer | None = None
        self.lock = threading.Lock()
        self.received = 0
        self.last_at = 0.0
        self.traces: set[str] = set()  # the trace ids seen, for the start-up probe
        self.services: dict[str, int] = {}  # spans per service

    def start(self) -> None:
        # No SO_REUSEPORT: a second listener on the port must fail, not share it.
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp"), options=[("grpc.so_reuseport", 0)]
        )
        otlp_grpc.add_TraceServiceServicer_to_server(_Service(self), server)  # type: ignore[no-untyped-call]
        try:
            port = server.add_insecure_port(self.endpoint)
        except RuntimeError as e:
            port, why = 0, str(e)
        else:
            why = "the port is taken"
        if not port:
            raise ComponentError(f"trace receiver: cannot listen on {self.endpoint}: {why}")
        if self.http_address is not None:
            handler = type("Handler", (_HttpHandler,), {"receiver": self})
            try:
                self.http = http.server.ThreadingHTTPServer(self.http_address, handler)
            except OSError as e:
                raise ComponentError(f"trace receiver: cannot listen on {self.http_endpoint}: {e.strerror or e}") from e
            threading.Thread(target=self.http.serve_forever, name="otlp-http", daemon=True).start()
        server.start()
        self.server = server

    def stop(self, wait_s: float = FLUSH_WAIT_S, expect: set[str] | None = None) -> set[str]:
        """Stop once every trace of `expect` has arrived (exporters batch: CRI-O every 5 s) and no
        batch has come for `wait_s`, or after at most 10 × `wait_s`; the expected traces that
        did not arrive."""
        want = set(expect or ())
        if self.server is None:
            return want
        deadline = time.monotonic() + 10 * wait_s
        while time.monotonic() < deadline:
            with self.lock:
                missing = want - self.traces
            if not missing and time.monotonic() - max(self.last_at, 0) >= wait_s:
                break
            time.sleep(0.1)
        with self.lock:
            missing = want - self.traces
        self.server.stop(grace=1).wait()
        self.server = None
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
        return missing

    def seen(self, trace_id: str) -> bool:
        with self.lock:
            return trace_id in self.traces

    def count(self, service: str) -> int:
        with self.lock:
            return self.services.get(service, 0)

    def take(self, request: otlp.ExportTraceServiceRequest) -> None:
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            service = str(resource.get("service.name") or "unknown")
            # A kubelet names its node (each stack's kubelet has its own: bench.node.kubeletd).
            host = {"host.name": resource["host.name"]} if "host.name" in resource else {}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    self._one(service, sp, host)
        with self.lock:
            self.last_at = time.monotonic()

    def _one(self, service: str, sp: trace_pb2.Span, resource: dict[str, Any]) -> None:
        attrs = attributes(sp.attributes)
        kept = {**resource, **{k: attrs[k] for k in KEPT_ATTRIBUTES if k in attrs}}
        with self.lock:
            self.received += 1
            self.traces.add(sp.trace_id.hex())
            self.services[service] = self.services.get(service, 0) + 1
        self.emit(
            Span(
                run_id=self.run_id,
                node=self.node,
                stack="",
                handler="",
                iteration=-1,
                concurrency=0,
                worker=-1,
                warmup=False,
                service=service,
                trace_id=sp.trace_id.hex(),
                span_id=sp.span_id.hex(),
                parent_span_id=sp.parent_span_id.hex(),
                name=sp.name,
                span_kind=KINDS.get(int(sp.kind), str(sp.kind)),
                start_unix_ns=int(sp.start_time_unix_nano),
                end_unix_ns=int(sp.end_time_unix_nano),
                status=int(sp.status.code),
                attributes=json.dumps(kept, sort_keys=True, default=str),
            )
        )


def traced(stacks: list[Any]) -> list[Any]:
    """The stack instances that export their own spans (their description's `tracing`)."""
    return [s for s in stacks if (s.extra.get("tracing") or {}).get("endpoint")]


def endpoints(stacks: list[Any]) -> tuple[str, str]:
    """The receiver's gRPC and HTTP endpoints the traced instances name; one of each, or an error."""
    grpc_at = {str(s.extra["tracing"]["endpoint"]) for s in traced(stacks)}
    http_at = {str(s.extra["tracing"].get("http_endpoint") or "") for s in traced(stacks)} - {""}
    for kind, found in (("gRPC", grpc_at), ("HTTP", http_at)):
        if len(found) > 1:
            raise ComponentError(
                f"tracing: the traced stacks name different {kind} endpoints: {', '.join(sorted(found))}"
            )
    return (grpc_at.pop() if grpc_at else "", http_at.pop() if http_at else "")


PROBE_WAIT_S = 150.0  # grpc-go's reconnect back-off tops out at 120 s


# A CRI client for a stack whose calls carry our traceparent (bench.node.cri.CriClient), given by
# the agent: this module stays below the CRI client.
Connect = Callable[[Any, Tracer], Any]


def probe(
    stack: Any, tracer: Tracer, receiver: Receiver, job: Any, connect: Connect, timeout_s: float = PROBE_WAIT_S
) -> float:
    """Untimed, before the first lifecycle: a traced Version call to `stack`, again every second
    until a span of its trace reaches the receiver (a gRPC exporter that failed to connect before
    the run waits out its back-off first). Seconds it took; raises when none came."""
    client = connect(stack, tracer)
    conf = stack.extra["tracing"]
    service, propagates = str(conf.get("service", "")), bool(conf.get("propagates", True))
    start = time.monotonic()
    where = {"run_id": job.run_id, "node": job.node, "stack": stack.name, "handler": "", "iteration": -1}
    where |= {"concurrency": 0, "worker": -1, "warmup": True}
    try:
        while time.monotonic() - start < timeout_s:
            before = receiver.count(service)
            with tracer.lifecycle(where, "probe") as trace_id:
                client.version()
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                # cri-dockerd passes no traceparent on: any new span of dockerd's service will do.
                if receiver.seen(trace_id) or (not propagates and receiver.count(service) > before):
                    return time.monotonic() - start
                time.sleep(0.05)
    finally:
        client.close()
    raise ComponentError(
        f"tracing: no span of {stack.name} reached the receiver in {timeout_s:.0f} s"
        f" (its exporter: {stack.extra['tracing']}; see its log)"
    )


@contextlib.contextmanager
def tracing(job: Any, targets: list[Any], emit: Callable[[Any], None], connect: Connect) -> Iterator[Tracer]:
    """A run's tracing: our Tracer, and the receiver where the traced targets' stacks export
    (each probed until its spans arrive), stopped after their last batches came in (what arrived
    is counted in an Info)."""
    from bench.messages import Info

    tracer = Tracer(emit)
    stacks = traced(list({t.stack.name: t.stack for t in targets if t.stack is not None}.values()))
    grpc_at, http_at = endpoints(stacks)
    receiver = Receiver(grpc_at, job.run_id, job.node, emit, http_at) if grpc_at else None
    if receiver is None:
        emit(
            Info(
                message="tracing: no traced stack instance among the targets (hopbench_tracing_twins);"
                " only our client spans are recorded"
            )
        )
    else:
        receiver.start()
    try:
        if receiver is not None:
            for stack in stacks:
                took = probe(stack, tracer, receiver, job, connect)
                emit(Info(message=f"tracing: {stack.name}'s spans reach the receiver ({took:.1f} s to the first)"))
        yield tracer
    finally:
        if receiver is not None:
            # The lifecycles whose runtime reads our traceparent: each of their traces must arrive.
            propagating = {s.name for s in stacks if s.extra["tracing"].get("propagates", True)}
            expect = {t for name, ids in tracer.by_stack.items() if name in propagating for t in ids}
            missing = receiver.stop(expect=expect)
            emit(
                Info(
                    message=f"tracing: {tracer.spans} client span(s) of ours, {receiver.received} span(s) "
                    f"received from the daemons on {receiver.endpoint}"
                    + (f" and {receiver.http_endpoint}" if receiver.http_endpoint else "")
                    + (
                        f"; {len(missing)} of {len(expect)} traced lifecycles got no span of their runtime"
                        if missing
                        else ""
                    )
                )
            )
