"""XNATClient over real sockets against the XNAT emulator (login, errors, re-login, retries)."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from xnat_prefect._transport import RewindableBody
from xnat_prefect.client import XNATClient
from xnat_prefect.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
    ResourceNotFoundError,
    ServerError,
    XNATConnectionError,
    XNATError,
)

FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "timeout": 10.0}


def requests_to(emulator: Any, key: str) -> int:
    return int(emulator.metrics()["requests"].get(key, 0))


@pytest.fixture
def client(xnat_emulator: Any) -> Iterator[XNATClient]:
    c = XNATClient(
        xnat_emulator.url, xnat_emulator.admin_user, xnat_emulator.admin_password, **FAST
    )
    try:
        yield c
    finally:
        c.close()


def test_login_success(xnat_emulator: Any) -> None:
    with XNATClient(xnat_emulator.url, "admin", "admin", **FAST) as client:
        assert client.is_authenticated
        assert client.username == "admin"
        assert client.login_count == 1
        assert repr(client) == f"XNATClient(base_url={xnat_emulator.url!r}, username='admin')"
        assert client.get_text("/xapi/users/username") == "admin"
    assert requests_to(xnat_emulator, "POST /data/JSESSION") == 1


def test_bad_password_is_an_authentication_error_without_the_password(xnat_emulator: Any) -> None:
    client = XNATClient(xnat_emulator.url, "admin", "wrong-horse-battery", **FAST)
    try:
        with pytest.raises(AuthenticationError) as info:
            client.authenticate()
    finally:
        client.close()
    message = str(info.value)
    assert info.value.status_code == 401
    assert xnat_emulator.url in message and "username and password" in message
    assert "wrong-horse-battery" not in message
    assert not client.is_authenticated
    assert requests_to(xnat_emulator, "POST /data/JSESSION") == 1  # 401 is not retried


def test_client_without_credentials(xnat_emulator: Any) -> None:
    with XNATClient(xnat_emulator.url, **FAST) as anonymous:
        assert anonymous.get_json("/xapi/siteConfig/buildInfo")["version"]
        with pytest.raises(InvalidInputError):
            anonymous.authenticate()
        with pytest.raises(AuthenticationError):
            anonymous.get_result_set("/data/projects")


def test_logout_invalidates_the_session(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    client.close()
    assert requests_to(xnat_emulator, "DELETE /data/JSESSION") == 1
    assert xnat_emulator.expire_sessions("admin") == []  # nothing left to expire
    with pytest.raises(XNATError, match="closed"):
        client.get("/data/projects")


def test_404_is_mapped_and_not_retried(xnat_emulator: Any, client: XNATClient) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        client.get("/data/projects/NOPE", params={"format": "json"})
    assert info.value.status_code == 404
    assert info.value.path == "/data/projects/NOPE"
    assert info.value.method == "GET"
    assert info.value.message and "<" not in info.value.message
    assert requests_to(xnat_emulator, "GET /data/projects/{project}") == 1


def test_relogin_once_for_eight_threads(xnat_emulator: Any, client: XNATClient) -> None:
    client.put("/data/projects/P1")
    assert client.login_count == 1
    assert xnat_emulator.expire_sessions("admin")
    barrier = threading.Barrier(8)
    results: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            results.append(client.get_result_set("/data/projects"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert len(results) == 8 and all(r[0]["ID"] == "P1" for r in results)
    assert client.login_count == 2
    assert requests_to(xnat_emulator, "POST /data/JSESSION") == 2


def test_second_401_after_relogin_is_raised(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    xnat_emulator.add_fault(r"^GET /data/projects$", "status", status=401)
    with pytest.raises(AuthenticationError):
        client.get("/data/projects")
    assert client.login_count == 2  # one re-login, then give up


def test_login_page_redirect_for_browser_agents_triggers_relogin(xnat_emulator: Any) -> None:
    agent = "Mozilla/5.0 (X11; Linux x86_64)"
    with XNATClient(xnat_emulator.url, "admin", "admin", user_agent=agent, **FAST) as client:
        xnat_emulator.expire_sessions("admin")
        assert client.get_result_set("/data/projects") == []
        assert client.login_count == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (403, PermissionDeniedError),
        (404, ResourceNotFoundError),
        (409, ConflictError),
        (500, ServerError),
    ],
)
def test_retry_stops_on_non_transient_status(
    xnat_emulator: Any, client: XNATClient, status: int, error: type[Exception]
) -> None:
    client.authenticate()
    xnat_emulator.add_fault(r"^GET /data/projects$", "status", status=status, body="nope")
    with pytest.raises(error):
        client.get("/data/projects")
    assert requests_to(xnat_emulator, "GET /data/projects") == 1


def test_transient_503_is_retried(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    xnat_emulator.add_fault(r"^GET /data/projects$", "status", status=503, times=2)
    assert client.get_result_set("/data/projects") == []
    assert requests_to(xnat_emulator, "GET /data/projects") == 3


def test_retries_are_bounded(xnat_emulator: Any) -> None:
    with XNATClient(xnat_emulator.url, "admin", "admin", max_retries=2, **FAST) as client:
        xnat_emulator.add_fault(r"^GET /data/projects$", "status", status=502)
        with pytest.raises(ServerError):
            client.get("/data/projects")
    assert requests_to(xnat_emulator, "GET /data/projects") == 3


def test_rate_limit_honours_retry_after(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    xnat_emulator.add_fault(r"^GET /data/projects$", "rate_limit", retry_after=0.3, times=1)
    started = time.monotonic()
    client.get("/data/projects")
    assert time.monotonic() - started >= 0.3
    assert requests_to(xnat_emulator, "GET /data/projects") == 2


def test_dropped_connection_is_retried_for_get(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    xnat_emulator.add_fault(r"^GET /data/projects$", "drop", times=1)
    assert client.get_result_set("/data/projects") == []
    assert requests_to(xnat_emulator, "GET /data/projects") == 2


def test_post_is_not_retried_once_sent(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    xnat_emulator.add_fault(r"^POST /data/projects$", "status", status=503)
    with pytest.raises(ServerError):
        client.post("/data/projects")
    assert requests_to(xnat_emulator, "POST /data/projects") == 1
    with pytest.raises(ServerError):
        client.post("/data/projects", retry=True)
    assert requests_to(xnat_emulator, "POST /data/projects") == 1 + 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_post_is_retried_when_the_connection_was_refused(caplog: pytest.LogCaptureFixture) -> None:
    client = XNATClient(f"http://127.0.0.1:{_free_port()}", max_retries=2, **FAST)
    caplog.set_level(logging.WARNING, logger="xnat_prefect")
    try:
        with pytest.raises(XNATConnectionError) as info:
            client.post("/data/services/import")
    finally:
        client.close()
    assert info.value.request_sent is False
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


def test_stream_maps_errors_and_relogs_in(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    xnat_emulator.expire_sessions("admin")
    with client.stream("GET", "/xapi/users/username") as response:
        assert b"".join(response.iter_bytes()) == b"admin"
    assert client.login_count == 2
    with pytest.raises(ResourceNotFoundError), client.stream("GET", "/data/projects/NOPE"):
        pass


def test_alias_token_login(xnat_emulator: Any, client: XNATClient) -> None:
    token = client.get_json("/data/services/tokens/issue")
    with XNATClient(
        xnat_emulator.url, alias_token=token["alias"], alias_secret=token["secret"], **FAST
    ) as aliased:
        assert aliased.username == "admin"
        assert token["secret"] not in repr(aliased)
    bad = XNATClient(
        xnat_emulator.url,
        alias_token=token["alias"],
        alias_secret="not-the-real-secret-0123456789",
        **FAST,
    )
    with pytest.raises(AuthenticationError, match="alias"):
        bad.authenticate()
    bad.close()


def test_clone_is_independent(xnat_emulator: Any, client: XNATClient) -> None:
    client.authenticate()
    twin = client.clone()
    try:
        assert not twin.is_authenticated
        assert twin.get_text("/xapi/users/username") == "admin"
        assert twin.login_count == 1
    finally:
        twin.close()
    assert client.get_text("/xapi/users/username") == "admin"
    assert client.login_count == 1


def test_secrets_never_reach_logs(xnat_emulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    xnat_emulator.add_user("jdoe", "S3cret-pass-xyz")
    caplog.set_level(logging.DEBUG)
    with XNATClient(xnat_emulator.url, "jdoe", "S3cret-pass-xyz", **FAST) as client:
        client.get_text("/xapi/users/username")
        session_ids = xnat_emulator.expire_sessions("jdoe")
        client.get_text("/xapi/users/username")
    assert session_ids
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "S3cret-pass-xyz" not in text
    assert all(sid not in text for sid in session_ids)


def test_rewindable_body_rules() -> None:
    seekable = io.BytesIO(b"abcdef")
    seekable.read(2)
    body = RewindableBody(seekable, None)
    seekable.read()
    body.rewind()
    assert body.rewindable and seekable.read() == b"cdef"
    assert RewindableBody(b"bytes", None).rewindable
    assert not RewindableBody(iter([b"a"]), None).rewindable
    assert RewindableBody(None, {"file": ("a.dcm", io.BytesIO(b"x"))}).rewindable


def test_bad_construction_arguments() -> None:
    with pytest.raises(InvalidInputError):
        XNATClient("xnat.example.org")
    with pytest.raises(InvalidInputError, match="credentials"):
        XNATClient("https://admin:pw@xnat.example.org")
    with pytest.raises(InvalidInputError):
        XNATClient("https://xnat.example.org", "admin")
    with pytest.raises(InvalidInputError):
        XNATClient("https://xnat.example.org", alias_token="a")
    with pytest.raises(InvalidInputError):
        XNATClient("https://xnat.example.org", ca_bundle="/nonexistent.pem")
    client = XNATClient("https://xnat.example.org/")
    try:
        assert client.base_url == "https://xnat.example.org"
        with pytest.raises(InvalidInputError, match="another server"):
            client.get("https://evil.example.com/data/projects")
    finally:
        client.close()


def test_session_lost_detection_without_a_server() -> None:
    from xnat_prefect._transport import session_lost

    request = httpx.Request("GET", "http://xnat.test/data/projects")
    login_page = httpx.Response(
        200,
        text='<html><title>XNAT Login</title><input name="j_username"></html>',
        headers={"content-type": "text/html"},
        request=request,
    )
    assert session_lost(login_page, expect_json=True)
    assert not session_lost(login_page, expect_json=False)
    redirect = httpx.Response(302, headers={"location": "/app/template/Login.vm"}, request=request)
    assert session_lost(redirect, expect_json=False)
    archive_redirect = httpx.Response(
        303, headers={"location": "/data/archive/projects/P1"}, request=request
    )
    assert not session_lost(archive_redirect, expect_json=False)
    assert session_lost(httpx.Response(401, request=request), expect_json=False)
