"""Shared by the HTTP test peers: serve an ASGI app with uvicorn on a free loopback port.

    from uvicorn_peer import serve_on_free_port
    sys.exit(asyncio.run(serve_on_free_port(app, ssl_certfile=...)))

Binds 127.0.0.1 on a port the kernel picks, prints that port on stdout once uvicorn accepts
connections (the tests wait for that line), and serves until killed. Extra keyword arguments
go to `uvicorn.Config`.
"""
import asyncio
import socket

import uvicorn


async def serve_on_free_port(app, **config) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            return 1
        await asyncio.sleep(0.02)
    print(port, flush=True)
    await serving
    return 0
