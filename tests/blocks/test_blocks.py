"""Blocks: Prefect's standard block suite, validation, secrecy and a real login."""

from __future__ import annotations

import logging

import pytest
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr, ValidationError

from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.errors import AuthenticationError
from xnat_prefect.testing import XNATEmulator


class TestXNATCredentialsStandard(BlockStandardTestSuite):
    # test_has_a_valid_image downloads the logo over the network, which these machines do not
    # have: it is deselected in tests/blocks/conftest.py, and only that test.
    @pytest.fixture
    def block(self) -> type[XNATCredentials]:
        return XNATCredentials


class TestDicomNodeStandard(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[DicomNode]:
        return DicomNode


def test_credentials_need_a_way_to_log_in() -> None:
    with pytest.raises(ValidationError, match="username and password, or alias_token"):
        XNATCredentials(url="https://xnat.example.org", username="only-user")
    with pytest.raises(ValidationError, match="http"):
        XNATCredentials(url="xnat.example.org", username="u", password=SecretStr("p"))


def test_secrets_stay_out_of_repr_and_dump() -> None:
    credentials = XNATCredentials(
        url="https://xnat.example.org", username="u", password=SecretStr("Pa55-word-Q")
    )
    assert "Pa55-word-Q" not in repr(credentials)
    assert "Pa55-word-Q" not in str(credentials.model_dump())
    assert "Pa55-word-Q" not in credentials.model_dump_json()


def test_server_key_names_the_host() -> None:
    credentials = XNATCredentials(
        url="https://XNAT.example.org:8443/", username="u", password=SecretStr("p")
    )
    assert credentials.server_key == "xnat.example.org:8443"


def test_get_client_logs_in_against_the_emulator(xnat_emulator: XNATEmulator) -> None:
    credentials = XNATCredentials(
        url=xnat_emulator.url, username="admin", password=SecretStr("admin")
    )
    with credentials.get_client() as client:
        assert client.is_authenticated
        assert client.get_text("/xapi/users/username") == "admin"


def test_shared_client_is_reused(xnat_emulator: XNATEmulator) -> None:
    credentials = XNATCredentials(
        url=xnat_emulator.url, username="admin", password=SecretStr("admin")
    )
    first = credentials.shared_client()
    assert credentials.shared_client() is first
    assert first.login_count == 1


def test_wrong_password_is_a_typed_error_without_the_password(
    xnat_emulator: XNATEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = XNATCredentials(
        url=xnat_emulator.url, username="admin", password=SecretStr("Wrong-Pass-77")
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as failure:
        credentials.get_client()
    assert "Wrong-Pass-77" not in str(failure.value)
    assert "Wrong-Pass-77" not in caplog.text


def test_alias_token_credentials(xnat_emulator: XNATEmulator) -> None:
    import httpx

    token = httpx.get(
        f"{xnat_emulator.url}/data/services/tokens/issue", auth=("admin", "admin")
    ).json()
    credentials = XNATCredentials(
        url=xnat_emulator.url, alias_token=token["alias"], alias_secret=SecretStr(token["secret"])
    )
    with credentials.get_client() as client:
        assert client.get_text("/xapi/users/username") == "admin"


def test_dicom_node_validates_ae_titles() -> None:
    assert DicomNode(host="127.0.0.1", called_ae_title=" XNAT ").called_ae_title == "XNAT"
    with pytest.raises(ValidationError, match="AE titles"):
        DicomNode(host="h", called_ae_title="THIS-TITLE-IS-TOO-LONG")
    with pytest.raises(ValidationError):
        DicomNode(host="h", port=70000)
