"""HTTP guards that hold before anyone is known (issue 14): the request body limit (413 before
authentication), security headers, /docs without the internet, logs without patient data."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from lab.config import Settings
from lab.db import make_engine
from lab.main import create_app
from lab.serve import WithoutQuery
from testkit.database import ScratchDatabase


@pytest.fixture
def live_port(settings: Settings, engine: Engine) -> Iterator[int]:
    """The app under uvicorn on a real socket (the body limit is about what is read from it)."""
    app = create_app(settings, engine=engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(5)
    sock.close()


def _raw(port: int, request: bytes, *, then: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if then:
            sock.sendall(then)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_declared_large_body_gets_413_before_a_byte_of_it_or_any_credential(
    live_port: int,
) -> None:
    started = time.monotonic()
    answer = _raw(
        live_port,
        b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 104857600\r\n\r\n",  # 100 MB announced, nothing sent
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5  # answered without waiting for the body


def test_a_chunked_body_over_the_limit_gets_413_not_401(live_port: int) -> None:
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(180))  # 11.25 MiB
    answer = _raw(
        live_port,
        b"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        then=body + b"0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_body_under_the_limit_goes_on_to_authentication(client: TestClient) -> None:
    response = client.post("/api/v1/orders", content=b"{}" + b" " * 100_000)
    assert response.status_code == 401


def test_the_limit_is_a_setting(settings: Settings, engine: Engine) -> None:
    small = settings.model_copy(update={"http_max_body_bytes": 2048})
    with TestClient(create_app(small, engine=engine)) as client:
        assert client.post("/api/v1/orders", content=b"x" * 4096).status_code == 413
        assert client.post("/api/v1/orders", content=b"{}").status_code == 401


@pytest.mark.parametrize("path", ["/login", "/api/v1/specimens/2600000001", "/healthz"])
def test_security_headers_on_pages_and_api(
    client: TestClient, as_role: dict[str, dict[str, str]], path: str
) -> None:
    response = client.get(path, headers=as_role["technician"])
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_static_files_may_be_cached(client: TestClient) -> None:
    response = client.get("/static/lab.css")
    assert response.status_code == 200
    assert response.headers.get("cache-control") != "no-store"


def test_docs_are_served_from_packaged_files(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # nothing from the internet
    assert "<script>" not in page.text  # no inline script (the CSP forbids it)
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/static/docs.js").status_code == 200
    assert client.get("/redoc").status_code == 404  # loaded its script from a CDN: gone


def test_the_access_log_keeps_the_path_without_the_query() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/search?q=01017012345", "1.1", 200),
        None,
    )
    assert WithoutQuery().filter(record)
    assert "01017012345" not in record.getMessage()
    assert "GET /search HTTP/1.1" in record.getMessage()


def test_database_errors_do_not_carry_the_statement_parameters(
    test_database: ScratchDatabase,
) -> None:
    """The parameters SQLAlchemy would print under a failing statement (and so into a log)."""
    engine = make_engine(test_database.url, pool_size=1)
    try:
        with engine.connect() as connection, pytest.raises(SQLAlchemyError) as raised:
            connection.execute(text("SELECT length(:name) / 0"), {"name": "01017012345 Nordmann"})
        assert "Nordmann" not in str(raised.value)
        assert "parameters hidden" in str(raised.value)
    finally:
        engine.dispose()
