"""What a failed connection to XNAT means, how to fix it, and whether retrying can help.

Used by :func:`xnat_prefect.errors.error_from_transport` for ``httpx.ConnectError``: a TLS
certificate that is not trusted and a port that does not speak TLS are not transient (retrying
cannot help) and say what to change; anything else names the server and stays transient.
"""

from __future__ import annotations

__all__ = ["connect_hint"]

_HINTS: tuple[tuple[tuple[str, ...], str, bool | None], ...] = (
    (
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "hostname mismatch"),
        "the TLS certificate of XNAT{at} was not accepted ({detail}); for a private or "
        "self-signed certificate pass ca_bundle=<PEM file of its CA> (XNATCredentials.ca_bundle); "
        "verify=False / verify_tls=False is for testing only",
        False,
    ),
    (
        ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure"),
        "XNAT{at} does not speak TLS on that port ({detail}): for a plain-HTTP server use an "
        "http:// URL, otherwise the server's HTTPS port",
        False,
    ),
    (
        ("Name or service not known", "nodename nor servname", "getaddrinfo failed"),
        "the host of XNAT{at} could not be resolved ({detail}); check the URL",
        None,
    ),
)


def connect_hint(detail: str, server: str | None) -> tuple[str, bool | None]:
    """Explain a failed connection.

    Args:
        detail: The (redacted) text of the connection error.
        server: ``scheme://host:port`` of the server, if known.

    Returns:
        ``(message, transient)``: ``transient`` is False when retrying cannot help, None when
        the usual rule applies (network failures are transient).

    Example:
        ```python
        connect_hint("[Errno 111] Connection refused", "http://127.0.0.1:8080")
        ```
    """
    at = f" at {server}" if server else ""
    for markers, template, transient in _HINTS:
        if any(marker in detail for marker in markers):
            return template.format(at=at, detail=detail), transient
    return (
        f"could not connect to XNAT{at} ({detail}); check the URL and port, and that XNAT is "
        "running and reachable from here",
        None,
    )
