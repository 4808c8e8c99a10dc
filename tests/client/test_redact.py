"""Unit tests of secret redaction (text and log records)."""

from __future__ import annotations

import base64
import io
import logging
from urllib.parse import quote, quote_plus

from xnat_prefect._redact import (
    MASK,
    SecretRedactingFilter,
    get_logger,
    install_redaction,
    redact,
    register_secret,
    registered_secrets,
)


def test_plain_secret() -> None:
    assert redact("password is hunter2-long ok", ["hunter2-long"]) == "password is *** ok"


def test_url_encoded_forms() -> None:
    secret = "p@ss w/rd&x=1"
    text = f"GET /a?x={quote(secret, safe='')} and body p={quote_plus(secret)}"
    cleaned = redact(text, [secret])
    assert quote(secret, safe="") not in cleaned
    assert quote_plus(secret) not in cleaned
    assert cleaned.count(MASK) == 2


def test_base64_basic_header_of_user_and_secret() -> None:
    token = base64.b64encode(b"jdoe:Tr0ub4dor&3").decode()
    cleaned = redact(f"sent header {token} to server", ["jdoe:Tr0ub4dor&3"])
    assert token not in cleaned and MASK in cleaned


def test_unknown_basic_header_is_masked_by_pattern() -> None:
    token = base64.b64encode(b"someone:whatever").decode()
    assert token not in redact(f"Authorization: Basic {token}")
    assert token not in redact(f"headers={{'authorization': 'Basic {token}'}}")
    assert token not in redact(f"retrying with Basic {token}")


def test_basic_word_that_is_not_a_credential_survives() -> None:
    assert redact("Basic usage of the API") == "Basic usage of the API"


def test_jsessionid_and_password_fields() -> None:
    text = (
        "Cookie: JSESSIONID=0123456789ABCDEF0123456789ABCDEF; Path=/ "
        "url=/data/services/auth?username=jdoe&password=s3cr3t&x=1 "
        'json={"password": "s3cr3t", "user": "jdoe"} j_password=s3cr3t'
    )
    cleaned = redact(text)
    assert "0123456789ABCDEF" not in cleaned
    assert "s3cr3t" not in cleaned
    assert "username=jdoe" in cleaned and '"user": "jdoe"' in cleaned
    assert "JSESSIONID=***" in cleaned and "password=***" in cleaned


def test_empty_inputs() -> None:
    assert redact("", ["x"]) == ""
    assert redact("nothing here", [None, ""]) == "nothing here"


def test_registry_ignores_short_values() -> None:
    register_secret("abc")
    register_secret(None)
    assert "abc" not in registered_secrets()
    register_secret("long-enough-secret")
    assert "long-enough-secret" in registered_secrets()


def _capture(logger: logging.Logger) -> io.StringIO:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return stream


def test_filter_masks_message_and_args() -> None:
    register_secret("registry-secret-42")
    logger = get_logger("xnat_prefect.tests.redact_args")
    stream = _capture(logger)
    logger.info("login with %s as %s", "registry-secret-42", "jdoe")
    logger.info("token registry-secret-42 in message")
    out = stream.getvalue()
    assert "registry-secret-42" not in out
    assert out.splitlines() == ["login with *** as jdoe", "token *** in message"]


def test_filter_masks_tracebacks() -> None:
    register_secret("traceback-secret-99")
    logger = get_logger("xnat_prefect.tests.redact_exc")
    stream = _capture(logger)
    try:
        raise RuntimeError("failed with traceback-secret-99")
    except RuntimeError:
        logger.exception("boom")
    assert "traceback-secret-99" not in stream.getvalue()
    assert "failed with ***" in stream.getvalue()


def test_install_redaction_on_foreign_logger_and_handlers_is_idempotent() -> None:
    register_secret("foreign-secret-7")
    logger = logging.getLogger("some.other.library")
    stream = _capture(logger)
    install_redaction(logger)
    install_redaction(logger)
    filters = [f for f in logger.filters if isinstance(f, SecretRedactingFilter)]
    assert len(filters) == 1
    assert all(
        any(isinstance(f, SecretRedactingFilter) for f in h.filters) for h in logger.handlers
    )
    logger.warning("GET /x/foreign-secret-7")
    assert stream.getvalue().strip() == "GET /x/***"


def test_install_redaction_accepts_adapters() -> None:
    logger = logging.getLogger("adapter.target")
    install_redaction(logging.LoggerAdapter(logger, {}))
    assert any(isinstance(f, SecretRedactingFilter) for f in logger.filters)


def test_package_logger_has_filter() -> None:
    package = logging.getLogger("xnat_prefect")
    assert any(isinstance(f, SecretRedactingFilter) for f in package.filters)
