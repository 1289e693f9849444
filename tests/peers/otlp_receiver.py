#!/usr/bin/env python3
"""An OTLP receiver for the telemetry tests, built from the official OpenTelemetry protobuf
definitions (PyPI `opentelemetry-proto`, with `grpcio` for the gRPC service): the collector's
two trace (and metrics) endpoints, writing down what it receives.

    python3 tests/peers/otlp_receiver.py OUT_FILE

Serves, both on 127.0.0.1 at free ports:
  - OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export` (and the metrics
    service), through the generated `*_pb2_grpc` servicers;
  - OTLP/HTTP with protobuf bodies: `POST /v1/traces` and `POST /v1/metrics`
    (`application/x-protobuf`), answered with the protobuf Export*ServiceResponse.
Prints ONE line once both accept connections: `grpc 127.0.0.1:P http 127.0.0.1:Q`.

Each span received is appended to OUT_FILE as one JSON line (flushed):
  {"transport": "grpc"|"http", "service": ..., "scope": ..., "name": ..., "kind": N,
   "trace_id": hex, "span_id": hex, "parent_span_id": hex or "", "attributes": {k: v},
   "status": {"code": N, "message": ...}}
and each metric of an export as one line:
  {"transport": ..., "service": ..., "metric": NAME, "kind": "sum"|"gauge"|"histogram"|...,
   "unit": ..., "points": [{"attributes": {k: v}, "value": N} or {..., "count": N, "sum": X}]}
"""
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

LOCK = threading.Lock()
OUT = None


def write(record):
    with LOCK:
        OUT.write(json.dumps(record, sort_keys=True) + "\n")
        OUT.flush()


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def record_traces(request, transport):
    for rs in request.resource_spans:
        service = attributes(rs.resource.attributes).get("service.name")
        for ss in rs.scope_spans:
            for span in ss.spans:
                write({
                    "transport": transport,
                    "service": service,
                    "scope": ss.scope.name,
                    "name": span.name,
                    "kind": span.kind,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "attributes": attributes(span.attributes),
                    "status": {"code": span.status.code, "message": span.status.message},
                })


def record_metrics(request, transport):
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                points = []
                for point in getattr(metric, kind).data_points if kind else []:
                    seen = {"attributes": attributes(point.attributes)}
                    if kind == "histogram":
                        seen["count"] = point.count
                        seen["sum"] = point.sum
                    else:
                        seen["value"] = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                    points.append(seen)
                write({
                    "transport": transport,
                    "service": attributes(rm.resource.attributes).get("service.name"),
                    "metric": metric.name,
                    "kind": kind,
                    "unit": metric.unit,
                    "points": points,
                })


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        record_traces(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        record_metrics(request, "grpc")
        return metrics_service_pb2.ExportMetricsServiceResponse()


ROUTES = {
    "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, record_traces,
                   trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": (metrics_service_pb2.ExportMetricsServiceRequest, record_metrics,
                    metrics_service_pb2.ExportMetricsServiceResponse),
}


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        route = ROUTES.get(self.path)
        if route is None:
            self.send_error(404)
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-protobuf":
            self.send_error(415)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request_type, record, response_type = route
        request = request_type()
        try:
            request.ParseFromString(body)
        except DecodeError:
            self.send_error(400)
            return
        record(request, "http")
        answer = response_type().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def main():
    global OUT
    if len(sys.argv) != 2:
        sys.exit("usage: otlp_receiver.py OUT_FILE")
    OUT = open(sys.argv[1], "a", encoding="utf-8")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"grpc 127.0.0.1:{grpc_port} http 127.0.0.1:{http.server_address[1]}", flush=True)
    # Until killed, or until the test closes our stdin.
    sys.stdin.read()
    http.shutdown()
    server.stop(0)


if __name__ == "__main__":
    main()
