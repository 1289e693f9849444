#!/usr/bin/env python3
"""A small billing API in FastAPI: the plain HTTP API (not MCP) that Custos governs in the
tests of `[[apis]]`. FastAPI generates its OpenAPI 3.1 document at `/openapi.json`, which
custos-openapi imports; the proxy's tests will call the operations through the gateway.

    .venv-peers/bin/python tests/peers/billing_api.py --port-file FILE

Binds 127.0.0.1 on a free port and, once it accepts connections, writes that port to FILE
(renamed into place). State is in memory: orders `o-1` (4200 EUR cents) and `o-2` exist at
start.

Operations (each with an explicit operation id, so tool names do not depend on FastAPI's
generated ones). The `Authorization` header is read from the request, not declared as a
parameter: it is the credential the gateway injects, never a tool argument.

| operation id | method and path | what it does |
| --- | --- | --- |
| `get_order` | `GET /orders/{order_id}` | the order, or 404 |
| `delete_order` | `DELETE /orders/{order_id}` | removes the order: `{"deleted": ID}`, or 404 |
| `get_receipt` | `GET /orders/{order_id}/receipt?format=pdf\\|text` | the receipt in that format (default `text`) |
| `create_refund` | `POST /refunds` | body `{order_id, amount_cents, currency, reason}` (pydantic-validated, 422 otherwise): the refund with an `id`, and `seen_authorization`, the `Authorization` header it received (null without one) |
| `put_attachment` | `PUT /orders/{order_id}/attachment` | any body, raw (not JSON): `{order_id, bytes, sha256, content_type}` of what it received |
| `echo_auth` | `GET /debug/echo-auth` | `{"authorization": VALUE}`: the `Authorization` header it received, in the body (what a leak guard must redact) |
| `get_big` | `GET /big?bytes=N` | N bytes of text (`0 <= N <= 16 MiB`) |
"""
import argparse
import asyncio
import hashlib
import itertools
import sys
from enum import Enum

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from uvicorn_peer import serve_on_free_port

MAX_BIG_BYTES = 16 * 1024 * 1024

app = FastAPI(title="Custos test billing API", version="1.0.0")

ORDERS = {
    "o-1": {"order_id": "o-1", "customer": "c-7", "amount_cents": 4200, "currency": "EUR", "status": "paid"},
    "o-2": {"order_id": "o-2", "customer": "c-9", "amount_cents": 1999, "currency": "USD", "status": "paid"},
}
REFUND_IDS = itertools.count(1)


class RefundRequest(BaseModel):
    order_id: str
    amount_cents: int = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)
    reason: str


class ReceiptFormat(str, Enum):
    pdf = "pdf"
    text = "text"


def order_or_404(order_id: str) -> dict:
    order = ORDERS.get(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order


@app.get("/orders/{order_id}", operation_id="get_order", summary="Read one order")
def get_order(order_id: str) -> dict:
    return order_or_404(order_id)


@app.delete("/orders/{order_id}", operation_id="delete_order", summary="Delete one order")
def delete_order(order_id: str) -> dict:
    order_or_404(order_id)
    del ORDERS[order_id]
    return {"deleted": order_id}


@app.get("/orders/{order_id}/receipt", operation_id="get_receipt", summary="An order's receipt")
def get_receipt(order_id: str, format: ReceiptFormat = Query(ReceiptFormat.text)) -> dict:
    order = order_or_404(order_id)
    return {"order_id": order_id, "format": format.value, "total": f"{order['amount_cents']} {order['currency']}"}


@app.post("/refunds", operation_id="create_refund", summary="Refund (part of) an order")
def create_refund(refund: RefundRequest, request: Request) -> dict:
    order_or_404(refund.order_id)
    seen = request.headers.get("authorization")
    return {"id": f"r-{next(REFUND_IDS)}", **refund.model_dump(), "seen_authorization": seen}


@app.put("/orders/{order_id}/attachment", operation_id="put_attachment", summary="Attach a file to an order")
async def put_attachment(order_id: str, request: Request) -> dict:
    # The raw bytes, as sent (no JSON): what the gateway streams on without reading.
    order_or_404(order_id)
    data = await request.body()
    return {
        "order_id": order_id,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": request.headers.get("content-type"),
    }


@app.get("/debug/echo-auth", operation_id="echo_auth", summary="Echo the Authorization header")
def echo_auth(request: Request) -> dict:
    return {"authorization": request.headers.get("authorization")}


@app.get("/big", operation_id="get_big", summary="N bytes of text", response_class=PlainTextResponse)
def get_big(bytes: int = Query(ge=0, le=MAX_BIG_BYTES)) -> str:
    return "x" * bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, help="where to write the port once listening")
    args = parser.parse_args()
    return asyncio.run(serve_on_free_port(app, port_file=args.port_file))


if __name__ == "__main__":
    sys.exit(main())
