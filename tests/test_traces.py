"""Tracing's own parts (bench/node/traces.py) over real gRPC on loopback: our client span and
its traceparent on a call, the OTLP receiver turning an export into Span events. Whether the
daemons' spans nest under ours is tests/integration/test_traces.py."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.errors import ComponentError
from bench.messages import Span
from bench.node import traces

WHERE = {"run_id": "r1", "node": "local", "stack": "containerd@2.4.2+traced", "handler": "runc", "iteration": 3}
WHERE |= {"concurrency": 1, "worker": 0, "warmup": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_call_in_a_lifecycle_carries_our_span_as_its_traceparent_and_outside_one_none():
    seen: list[dict[str, str]] = []

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(dict(context.invocation_metadata()))
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler("t.Echo", {"Say": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    spans: list[Span] = []
    tracer = traces.Tracer(spans.append)
    try:
        channel = tracer.intercept(grpc.insecure_channel(f"127.0.0.1:{port}"))
        say = channel.unary_unary("/t.Echo/Say")
        say(b"before", timeout=10)
        with tracer.lifecycle(WHERE, "cri") as trace_id:
            say(b"in", timeout=10)
            assert spans == []  # emitted when the lifecycle ends, never inside a timed call
        channel.close()
    finally:
        server.stop(0)
    assert "traceparent" not in seen[0]
    header = seen[1]["traceparent"]
    version, trace, span, flags = header.split("-")
    assert (version, trace, flags) == ("00", trace_id, "01") and len(span) == 16
    client = next(s for s in spans if s.span_kind == "client")
    root = next(s for s in spans if s.name == "lifecycle")
    assert client.span_id == span and client.parent_span_id == root.span_id and root.parent_span_id == ""
    assert client.name == "Say" and client.stack == WHERE["stack"] and client.iteration == 3
    assert client.level == root.level == "cri"
    assert root.start_unix_ns <= client.start_unix_ns <= client.end_unix_ns <= root.end_unix_ns
    assert json.loads(client.attributes)["rpc.service"] == "t.Echo"


def test_the_receiver_turns_an_otlp_export_into_span_events_and_keeps_only_named_attributes():
    got: list[Span] = []
    endpoint, web = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    receiver = traces.Receiver(endpoint, "r1", "local", got.append, web)
    receiver.start()
    try:
        span = trace_pb2.Span(
            trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            span_id=bytes.fromhex("b7ad6b7169203331"),
            parent_span_id=bytes.fromhex("00f067aa0ba902b7"),
            name="runtime.v1.RuntimeService/RunPodSandbox",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=1_000,
            end_time_unix_nano=5_000,
            attributes=[
                common_pb2.KeyValue(key="rpc.method", value=common_pb2.AnyValue(string_value="RunPodSandbox")),
                common_pb2.KeyValue(key="auth.token", value=common_pb2.AnyValue(string_value="secret")),
            ],
        )
        service = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="containerd"))
        request = otlp.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource=resource_pb2.Resource(attributes=[service]),
                    scope_spans=[trace_pb2.ScopeSpans(spans=[span])],
                )
            ]
        )
        with grpc.insecure_channel(endpoint) as channel:
            otlp_grpc.TraceServiceStub(channel).Export(request, timeout=10)
        # The same batch over OTLP/HTTP, gzipped as an exporter may send it.
        body = gzip.compress(request.SerializeToString())
        post = urllib.request.Request(
            f"http://{web}/v1/traces",
            data=body,
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        with urllib.request.urlopen(post, timeout=10) as resp:  # noqa: S310 - the receiver on loopback
            assert resp.status == 200
            otlp.ExportTraceServiceResponse.FromString(resp.read())
        junk = urllib.request.Request(f"http://{web}/v1/traces", data=b"not otlp \xff\xff")
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(junk, timeout=10)  # noqa: S310 - the receiver on loopback
    finally:
        receiver.stop(wait_s=0.2)
    assert len(got) == 2 and got[0] == got[1] and receiver.count("containerd") == 2
    one = got[0]
    assert (one.service, one.span_kind, one.name) == ("containerd", "server", "runtime.v1.RuntimeService/RunPodSandbox")
    assert (one.trace_id, one.span_id, one.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "00f067aa0ba902b7",
    )
    assert (one.start_unix_ns, one.end_unix_ns, one.run_id) == (1_000, 5_000, "r1")
    assert json.loads(one.attributes) == {"rpc.method": "RunPodSandbox"}  # no token in the results
    assert receiver.received == 2 and receiver.seen("0af7651916cd43dd8448eb211c80319c")


def test_the_receiver_listens_on_loopback_only_and_says_when_its_port_is_taken():
    with pytest.raises(ComponentError, match="loopback"):
        traces.Receiver("0.0.0.0:4317", "r1", "local", print)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ComponentError, match=f"cannot listen on 127.0.0.1:{port}"):
            traces.Receiver(f"127.0.0.1:{port}", "r1", "local", print).start()
