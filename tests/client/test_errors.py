"""Unit tests of the error tree and of the XNAT reply -> exception mapping."""

from __future__ import annotations

import email.utils
import pickle
import time

import httpx
import pytest

from xnat_prefect._redact import register_secret
from xnat_prefect.client import check_body_for_error
from xnat_prefect.errors import (
    MAX_MESSAGE_CHARS,
    ArchiveFailed,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidInputError,
    OperationError,
    PermissionDeniedError,
    PipelineFailed,
    PipelineKilled,
    PipelineTimedOut,
    RateLimitedError,
    ResourceNotFoundError,
    ServerError,
    SessionNotSettled,
    TransferError,
    UnexpectedResponseError,
    VerificationError,
    XNATConnectionError,
    XNATError,
    XNATRequestError,
    XNATStatusError,
    XNATTimeoutError,
    clean_message,
    error_from_response,
    error_from_transport,
    is_transient,
    parse_retry_after,
    raise_for_status,
)

RESTLET_PAGE = """<html>
<head>
   <title>Status page</title>
</head>
<body style="font-family: sans-serif;">
<p style="font-size: 1.2em;font-weight: bold;margin: 1em 0px;">Not Found</p>
<h3>Unable to find the specified experiment.</h3>
<p>You can get technical details <a href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html#sec10.4">here</a>.<br>
Please continue your visit at our <a href="/">home page</a>.
</p>
</body>
</html>
"""

TOMCAT_PAGE = (
    '<!doctype html><html lang="en"><head><title>HTTP Status 401 &#8211; Unauthorized</title>'
    "<style>body {font-family:Tahoma}</style></head><body><h1>HTTP Status 401 &#8211; Unauthorized"
    '</h1><hr class="line" /><p><b>Type</b> Status Report</p><p><b>Message</b> Login attempt '
    "failed. Please try again.</p><p><b>Description</b> The request has not been applied.</p>"
    "</body></html>"
)


def response(
    status: int,
    body: str = "",
    *,
    url: str = "http://xnat.test/data/experiments/XNAT_E00001?format=json",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.Response(status, text=body, headers=headers, request=httpx.Request(method, url))


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, ResourceNotFoundError),
        (409, ConflictError),
        (429, RateLimitedError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (417, XNATStatusError),
        (422, XNATStatusError),
    ],
)
def test_status_maps_to_class(status: int, cls: type[XNATStatusError]) -> None:
    exc = error_from_response(response(status, "boom"))
    assert type(exc) is cls
    assert exc.status_code == status
    assert isinstance(exc, XNATStatusError)
    assert isinstance(exc, XNATError)


def test_restlet_status_page_message_is_the_h3_text() -> None:
    exc = error_from_response(response(404, RESTLET_PAGE))
    assert isinstance(exc, ResourceNotFoundError)
    assert exc.message == "Unable to find the specified experiment."
    assert exc.method == "GET"
    assert exc.path == "/data/experiments/XNAT_E00001"
    assert "format=json" not in str(exc)
    assert str(exc) == (
        "GET /data/experiments/XNAT_E00001 -> HTTP 404: Unable to find the specified experiment."
    )


def test_h3_entities_are_unescaped() -> None:
    exc = error_from_response(response(409, "<html><h3>Label &quot;S1&quot; in use</h3></html>"))
    assert exc.message == 'Label "S1" in use'


def test_tomcat_page_message_paragraph() -> None:
    exc = error_from_response(response(401, TOMCAT_PAGE))
    assert isinstance(exc, AuthenticationError)
    assert exc.message == "Login attempt failed. Please try again."


def test_tomcat_page_without_message_uses_heading() -> None:
    page = (
        "<!doctype html><html><head><title>HTTP Status 401 - Unauthorized</title></head>"
        "<body><h1>HTTP Status 401 - Unauthorized</h1></body></html>"
    )
    assert error_from_response(response(401, page)).message == "HTTP Status 401 - Unauthorized"


def test_xapi_plain_text_body() -> None:
    body = "Unable to find requested file or resource: DicomSCPInstance(id: 5)"
    exc = error_from_response(response(404, body, url="http://xnat.test/xapi/dicomscp/5"))
    assert exc.message == body
    assert exc.path == "/xapi/dicomscp/5"


def test_json_error_body_uses_message() -> None:
    body = '{"timestamp": 1, "status": 400, "error": "Bad Request", "message": "bad wrapper"}'
    assert error_from_response(response(400, body)).message == "bad wrapper"


def test_empty_body_falls_back_to_reason_phrase() -> None:
    exc = error_from_response(response(403, ""))
    assert isinstance(exc, PermissionDeniedError)
    assert exc.message == "Forbidden"


def test_long_message_is_truncated() -> None:
    exc = error_from_response(response(500, "lorem ipsum " * 500))
    assert len(exc.message) <= MAX_MESSAGE_CHARS
    assert exc.message.endswith("…")


def test_message_is_redacted() -> None:
    register_secret("Sup3r-Secret-pw")
    body = "<h3>bad login Sup3r-Secret-pw; JSESSIONID=ABCDEF0123456789</h3>"
    exc = error_from_response(response(400, body))
    assert "Sup3r-Secret-pw" not in str(exc)
    assert "ABCDEF0123456789" not in str(exc)
    assert "***" in exc.message


def test_path_has_no_query_and_no_secret() -> None:
    register_secret("alias-secret-value-123")
    exc = error_from_response(
        response(
            404,
            "Unknown alias token.",
            url="http://xnat.test/data/services/tokens/validate/abc/alias-secret-value-123?x=1",
        )
    )
    assert exc.path == "/data/services/tokens/validate/abc/***"
    assert "alias-secret-value-123" not in str(exc)


def test_response_without_request_does_not_crash() -> None:
    exc = error_from_response(httpx.Response(404, text="gone"))
    assert isinstance(exc, ResourceNotFoundError)
    assert exc.method is None and exc.path is None
    assert str(exc) == "HTTP 404: gone"


def test_retry_after_seconds_and_date() -> None:
    exc = error_from_response(response(429, "slow down", headers={"Retry-After": "3"}))
    assert isinstance(exc, RateLimitedError)
    assert exc.retry_after == 3.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    exc = error_from_response(response(503, "", headers={"Retry-After": future}))
    assert exc.retry_after is not None and 25 <= exc.retry_after <= 31
    assert error_from_response(response(429, "")).retry_after is None


def test_parse_retry_after_edge_cases() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("  ") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") == 0.0
    past = email.utils.formatdate(1000.0, usegmt=True)
    assert parse_retry_after(past, now=2000.0) == 0.0


def test_raise_for_status() -> None:
    ok = response(200, "fine")
    assert raise_for_status(ok) is ok
    with pytest.raises(ConflictError):
        raise_for_status(response(409, "<h3>Already assigned to project:P2</h3>"))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (XNATTimeoutError("t"), True),
        (XNATConnectionError("c"), True),
        (RateLimitedError(429, "x"), True),
        (ServerError(502, "x"), True),
        (ServerError(503, "x"), True),
        (ServerError(504, "x"), True),
        (ServerError(500, "x"), False),
        (BadRequestError(400, "x"), False),
        (AuthenticationError(401, "x"), False),
        (PermissionDeniedError(403, "x"), False),
        (ResourceNotFoundError(404, "x"), False),
        (ConflictError(409, "x"), False),
        (InvalidInputError("x"), False),
        (UnexpectedResponseError("x"), False),
        (PipelineFailed("x"), False),
        (XNATRequestError("too many redirects"), False),
        (httpx.ReadTimeout("t"), True),
        (httpx.ConnectError("c"), True),
        (ValueError("x"), False),
    ],
)
def test_is_transient(exc: BaseException, expected: bool) -> None:
    assert is_transient(exc) is expected


def test_is_transient_can_include_500() -> None:
    assert is_transient(ServerError(500, "x"), server_errors=True)
    assert not is_transient(ConflictError(409, "x"), server_errors=True)


def test_transport_mapping_knows_whether_the_request_was_sent() -> None:
    refused = error_from_transport(httpx.ConnectError("refused"), method="POST", path="/a")
    assert isinstance(refused, XNATConnectionError) and refused.request_sent is False
    connect_timeout = error_from_transport(httpx.ConnectTimeout("t"), method="POST", path="/a")
    assert isinstance(connect_timeout, XNATTimeoutError) and connect_timeout.request_sent is False
    read_timeout = error_from_transport(httpx.ReadTimeout("t"), method="POST", path="/a")
    assert isinstance(read_timeout, XNATTimeoutError) and read_timeout.request_sent is True
    dropped = error_from_transport(httpx.RemoteProtocolError("peer closed"), method="GET", path="/")
    assert isinstance(dropped, XNATConnectionError) and dropped.request_sent is True
    assert "GET /" in str(dropped)


def test_outcome_errors_are_operation_errors() -> None:
    for cls in (
        ArchiveFailed,
        PipelineFailed,
        PipelineTimedOut,
        PipelineKilled,
        TransferError,
        VerificationError,
        SessionNotSettled,
    ):
        exc = cls("it failed", target="XNAT_E00001", status="Failed (Staging)")
        assert isinstance(exc, OperationError) and isinstance(exc, XNATError)
        assert exc.target == "XNAT_E00001" and exc.status == "Failed (Staging)"
        assert str(exc) == "it failed"


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="label"):
        raise InvalidInputError("bad label 'a b': use letters, digits and _")


def test_clean_message_collapses_whitespace() -> None:
    assert clean_message("  line one\n\n   line two  ") == "line one line two"
    assert clean_message("") == ""


@pytest.mark.parametrize(
    "body",
    [
        "",
        "/data/archive/projects/P1/subjects/S1/experiments/E1\r\n",
        "/data/prearchive/projects/P1/20240131_140509123/S1\r\n",
        '{"status": "success", "workflow-id": "12"}',
        "[]",
        "XNAT_E00001",
    ],
)
def test_check_body_success(body: str) -> None:
    assert check_body_for_error(body) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Error: session already archived", "Error: session already archived"),
        ("java.lang.NullPointerException at x", "java.lang.NullPointerException at x"),
        ("Unable to archive: conflict", "Unable to archive: conflict"),
        ("There was an error in the request : null", "There was an error in the request : null"),
        (RESTLET_PAGE, "Unable to find the specified experiment."),
        ('{"status": "failure", "message": "no such wrapper"}', "no such wrapper"),
    ],
)
def test_check_body_errors(body: str, expected: str) -> None:
    assert check_body_for_error(body) == expected


def test_check_body_login_page() -> None:
    page = '<html><title>XNAT -- Login</title><form><input name="j_username"></form></html>'
    message = check_body_for_error(page)
    assert message is not None and "login page" in message


@pytest.mark.parametrize(
    "exc",
    [
        ResourceNotFoundError(404, "gone", method="GET", path="/data/x"),
        RateLimitedError(429, "slow", method="GET", path="/x", retry_after=2.0),
        XNATConnectionError("refused", method="POST", path="/y", request_sent=False),
        UnexpectedResponseError("login page", status_code=200, method="GET", path="/z"),
        PipelineTimedOut("too slow", target="123", status="Running"),
        InvalidInputError("bad"),
    ],
)
def test_errors_survive_pickling(exc: XNATError) -> None:
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert str(copy) == str(exc)
    assert vars(copy) == vars(exc)


def test_errors_may_declare_themselves_transient() -> None:
    from xnat_prefect.dicom.store_scu import DicomNetworkError
    from xnat_prefect.errors import is_transient as check

    refused = DicomNetworkError("refused", host="h", port=1, called_aet="XNAT", transient=True)
    rejected = DicomNetworkError("bad AE", host="h", port=1, called_aet="X", transient=False)
    assert check(refused) is True
    assert check(rejected) is False
