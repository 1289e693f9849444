"""Shared by the HTTP test peers: serve an ASGI app with uvicorn on a free loopback port.

    from uvicorn_peer import serve_on_free_port
    sys.exit(asyncio.run(serve_on_free_port(app, ssl_certfile=...)))

Binds 127.0.0.1 on a port the kernel picks, announces that port once uvicorn accepts
connections (the tests wait for it), and serves until killed. The port is printed on stdout,
or, with `port_file=PATH`, written to PATH (through a temporary file renamed into place, so a
reader never sees a partial number). Extra keyword arguments go to `uvicorn.Config`.
"""
import asyncio
import os
import socket

import uvicorn


async def serve_on_free_port(app, port_file=None, **config) -> int:
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
    if port_file is None:
        print(port, flush=True)
    else:
        partial = f"{port_file}.partial"
        with open(partial, "w", encoding="ascii") as f:
            f.write(f"{port}\n")
        os.replace(partial, port_file)
    await serving
    return 0
