"""The web server the API, fuzzing and browser tests share: one per session, on a free local port."""

from __future__ import annotations

import socket
import threading
import time

import pytest


def serve(app) -> tuple[object, str]:
    """``app`` served by uvicorn in a thread; (the server, its base URL)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def web_url():
    from infercast.web import create_app

    server, url = serve(create_app())
    yield url
    server.should_exit = True
