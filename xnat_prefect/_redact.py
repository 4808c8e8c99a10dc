"""Secret redaction for log records, exception text and anything else shown to people.

Two layers:

* :func:`redact` replaces known secrets (and their URL-encoded and base64 forms) with ``***``
  and then scrubs secret-shaped text it does not know about: ``JSESSIONID=...`` cookies,
  ``Authorization: Basic ...`` headers, bare ``Basic <base64 of user:pass>`` tokens and
  ``password=...`` / ``"password": "..."`` fields.
* A process-wide registry (:func:`register_secret`) that :class:`SecretRedactingFilter` reads, so
  every secret the client has ever seen is scrubbed from every log record that passes a logger or
  handler carrying the filter. The filter is installed on the ``xnat_prefect`` logger at import
  time; :func:`get_logger` returns module loggers that carry it too (a filter on a parent logger
  does not see records logged through its children, so each module logger needs its own).

Example:
    ```python
    from xnat_prefect._redact import redact, register_secret

    register_secret("s3cret!")
    redact("login with s3cret! failed")  # 'login with *** failed'
    ```
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SecretRedactingFilter",
    "get_logger",
    "install_redaction",
    "redact",
    "register_secret",
    "registered_secrets",
]

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Registered secrets shorter than this are ignored: masking every ``a`` would wreck the logs."""

_PACKAGE_LOGGER = "xnat_prefect"

_lock = threading.Lock()
_registry: dict[str, tuple[str, ...]] = {}

_COOKIE_RE = re.compile(r"(JSESSIONID\s*[=:]\s*)[^;,\s&\"'<>]+", re.IGNORECASE)
_AUTH_HEADER_RE = re.compile(
    r"((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?\s*(?:basic|bearer|token)?\s*)"
    r"[^\s'\",;]+",
    re.IGNORECASE,
)
_BASIC_TOKEN_RE = re.compile(r"(\bBasic\s+)([A-Za-z0-9+/]{4,}={0,2})")
_SECRET_FIELD = r"(?:password|passwd|pwd|j_password|secret|alias_secret|api_key|token)"
_FORM_FIELD_RE = re.compile(rf"(\b{_SECRET_FIELD}=)[^&\s'\"]*", re.IGNORECASE)
_QUOTED_FIELD_RE = re.compile(
    rf"(['\"]{_SECRET_FIELD}['\"]\s*[:=]\s*)(['\"])(?:(?!\2).)*\2", re.IGNORECASE
)


def _forms(secret: str) -> tuple[str, ...]:
    """Every spelling of ``secret`` worth masking, longest first.

    Args:
        secret: The secret.

    Returns:
        The plain, URL-encoded (``%20`` and ``+`` styles) and base64 forms.
    """
    b64 = base64.b64encode(secret.encode("utf-8")).decode("ascii")
    candidates = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), b64}
    candidates.add(b64.rstrip("="))
    return tuple(sorted((c for c in candidates if c), key=len, reverse=True))


def register_secret(value: str | None) -> None:
    """Remember a secret so every log record and error message hides it from now on.

    Values shorter than :data:`MIN_SECRET_LENGTH` characters are ignored.

    Args:
        value: The secret (password, token, session id, ``user:password`` pair); None is ignored.

    Example:
        ```python
        register_secret(password)
        register_secret(f"{username}:{password}")  # covers its Basic-header base64 form
        ```
    """
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _registry:
            _registry[value] = _forms(value)


def registered_secrets() -> tuple[str, ...]:
    """The secrets registered so far (for the client's own redaction of server text).

    Returns:
        A snapshot of the registered values.
    """
    with _lock:
        return tuple(_registry)


def _basic_token(match: re.Match[str]) -> str:
    token = match.group(2)
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    if b":" not in decoded:
        return match.group(0)
    return match.group(1) + MASK


def _scrub_patterns(text: str) -> str:
    text = _COOKIE_RE.sub(lambda m: m.group(1) + MASK, text)
    text = _AUTH_HEADER_RE.sub(lambda m: m.group(1) + MASK, text)
    text = _BASIC_TOKEN_RE.sub(_basic_token, text)
    text = _FORM_FIELD_RE.sub(lambda m: m.group(1) + MASK, text)
    return _QUOTED_FIELD_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", text)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Mask secrets in ``text``.

    Each given secret is replaced in its plain, URL-encoded and base64 forms (the base64 form
    of a ``user:password`` pair is what a ``Basic`` header carries); then cookie, header and
    ``password=`` patterns are masked whatever their value.

    Args:
        text: Text to clean (a log message, a server reply, an URL).
        secrets: Extra secrets to mask besides the pattern pass (empty values are skipped).

    Returns:
        The text with every secret replaced by ``***``.

    Example:
        ```python
        redact("GET /x?password=hunter22", [])        # 'GET /x?password=***'
        redact("token aGk6aHVudGVyMjI=", ["hi:hunter22"])  # 'token ***'
        ```
    """
    if not text:
        return text
    forms: list[str] = []
    for secret in secrets:
        if secret:
            forms.extend(_forms(secret))
    for form in sorted(set(forms), key=len, reverse=True):
        text = text.replace(form, MASK)
    return _scrub_patterns(text)


def _redact_registered(text: str) -> str:
    with _lock:
        forms = [form for group in _registry.values() for form in group]
    for form in sorted(set(forms), key=len, reverse=True):
        text = text.replace(form, MASK)
    return _scrub_patterns(text)


class SecretRedactingFilter(logging.Filter):
    """A logging filter that masks every registered secret in a record's message and arguments.

    The record is rendered once (``msg % args``), cleaned, and stored back with no arguments, so
    handlers further down print the cleaned text. A pre-rendered traceback is cleaned too.

    Example:
        ```python
        import logging
        logging.getLogger("my.app").addFilter(SecretRedactingFilter())
        ```
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean the record in place; never drops it.

        Args:
            record: The log record.

        Returns:
            Always True.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = _redact_registered(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact_registered(record.exc_text)
        return True


_FILTER = SecretRedactingFilter()


def install_redaction(logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    """Attach the shared redaction filter to a logger and to its current handlers (idempotent).

    Args:
        logger: A logger, or a logger adapter such as Prefect's run logger.

    Example:
        ```python
        from prefect import get_run_logger
        install_redaction(get_run_logger())
        ```
    """
    target = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    if _FILTER not in target.filters:
        target.addFilter(_FILTER)
    for handler in target.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the redaction filter installed.

    Args:
        name: Logger name (usually ``__name__``).

    Returns:
        The logger.

    Example:
        ```python
        logger = get_logger(__name__)
        ```
    """
    logger = logging.getLogger(name)
    install_redaction(logger)
    return logger


install_redaction(logging.getLogger(_PACKAGE_LOGGER))
