"""Emulator fidelity fixes (docs/reliability.md E-1..E-6): Range, metrics, passwords, labels,
client disconnects and the ``drop`` fault."""

from __future__ import annotations

import io
import logging
import socket
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from xnat_prefect.testing import XNATEmulator
from xnat_prefect.testing.cli import build_parser
from xnat_prefect.testing.synthetic import generate_study

BASE = "/data/projects/P1/resources/DOCS/files"
FILE_KEY = "GET /data/projects/{project}/resources/{resource}/files/{path:path}"
PAYLOAD = bytes(range(256)) * 64
IMPORT = "/data/services/import"


def _seed_file(client: httpx.Client) -> None:
    assert client.put("/data/projects/P1").status_code == 200
    reply = client.put(
        f"{BASE}/blob.bin",
        params={"inbody": "true"},
        content=PAYLOAD,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 200, reply.text


def _host_port(emulator: XNATEmulator) -> tuple[str, int]:
    host, port = emulator.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# ----------------------------------------------------------------------------- E-1 / E-2 Range


def test_range_is_ignored_by_default_like_xnat(
    xnat_emulator: XNATEmulator, client: httpx.Client
) -> None:
    _seed_file(client)
    xnat_emulator.reset_metrics()
    reply = client.get(f"{BASE}/blob.bin", headers={"Range": "bytes=100-199"})
    assert reply.status_code == 200 and reply.content == PAYLOAD
    assert "content-range" not in reply.headers
    assert "accept-ranges" not in reply.headers  # XNAT does not advertise Range either
    metrics = xnat_emulator.metrics()
    assert metrics["statuses"][FILE_KEY] == {"200": 1}
    assert metrics["bytes_out"][FILE_KEY] == len(PAYLOAD)
    assert metrics["faults"] == {}  # the default is not a fault
    assert xnat_emulator.state is not None and not xnat_emulator.state.options.honor_range


def test_honor_range_from_the_constructor_sends_206_and_metrics_record_206(
    xnat_emulator_factory: Callable[..., XNATEmulator],
) -> None:
    emulator = xnat_emulator_factory(honor_range=True, enable_dicom=False)
    with httpx.Client(base_url=emulator.url, auth=("admin", "admin"), timeout=30) as c:
        _seed_file(c)
        emulator.reset_metrics()
        part = c.get(f"{BASE}/blob.bin", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == PAYLOAD[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(PAYLOAD)}"
        whole = c.get(f"{BASE}/blob.bin")
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    metrics = emulator.metrics()
    # E-2: the status the client received, not the one the response object started with
    assert metrics["statuses"][FILE_KEY] == {"206": 1, "200": 1}
    assert metrics["bytes_out"][FILE_KEY] == 100 + len(PAYLOAD)


def test_honor_range_through_the_control_api_and_set_options(
    xnat_emulator: XNATEmulator, client: httpx.Client
) -> None:
    _seed_file(client)
    url = xnat_emulator.url
    assert httpx.get(f"{url}/emulator/options").json() == {"honor_range": False}
    changed = httpx.put(f"{url}/emulator/options", json={"honor_range": True})
    assert changed.status_code == 200 and changed.json() == {"honor_range": True}
    assert client.get(f"{BASE}/blob.bin", headers={"Range": "bytes=-10"}).status_code == 206
    bad = httpx.put(f"{url}/emulator/options", json={"honor_range": "yes"})
    assert bad.status_code == 400 and "true or false" in bad.text
    unknown = httpx.put(f"{url}/emulator/options", json={"fast": True})
    assert unknown.status_code == 400 and "unknown emulator option" in unknown.text
    assert httpx.get(f"{url}/emulator/options").json() == {"honor_range": True}  # unchanged
    xnat_emulator.set_options(honor_range=False)
    assert client.get(f"{BASE}/blob.bin", headers={"Range": "bytes=-10"}).status_code == 200
    with pytest.raises(ValueError, match="unknown emulator option"):
        xnat_emulator.set_options(honour_range=True)


def test_ignore_range_fault_only_fires_when_range_is_honoured(
    xnat_emulator: XNATEmulator, client: httpx.Client
) -> None:
    _seed_file(client)
    rule = xnat_emulator.add_fault(r"GET .*/blob\.bin", "ignore_range")
    assert client.get(f"{BASE}/blob.bin", headers={"Range": "bytes=0-9"}).status_code == 200
    assert rule.fired == 0  # nothing to ignore: the default already ignores Range
    xnat_emulator.set_options(honor_range=True)
    reply = client.get(f"{BASE}/blob.bin", headers={"Range": "bytes=0-9"})
    assert reply.status_code == 200 and reply.content == PAYLOAD
    assert rule.fired == 1 and xnat_emulator.metrics()["faults"] == {"ignore_range": 1}


def test_cli_has_an_honor_range_switch() -> None:
    assert build_parser().parse_args(["serve", "--honor-range"]).honor_range is True
    assert build_parser().parse_args(["serve"]).honor_range is False


# ----------------------------------------------------------------------------- E-3 passwords


def test_non_ascii_passwords_log_in_and_wrong_ones_are_refused(
    xnat_emulator: XNATEmulator,
) -> None:
    xnat_emulator.add_user("jürgen", "pässwörd-日本")
    url = xnat_emulator.url
    good = httpx.post(f"{url}/data/JSESSION", auth=("jürgen", "pässwörd-日本"))
    assert good.status_code == 200 and good.text.strip()
    wrong = httpx.post(f"{url}/data/JSESSION", auth=("jürgen", "passwörd-日本"))
    assert wrong.status_code == 401
    ascii_guess = httpx.post(f"{url}/data/JSESSION", auth=("jürgen", "password"))
    assert ascii_guess.status_code == 401
    form = httpx.put(
        f"{url}/data/services/auth", data={"username": "jürgen", "password": "pässwörd-日本"}
    )
    assert form.status_code == 200 and form.text.strip()
    # an ASCII account given a non-ASCII guess is a plain 401, not a 500
    assert httpx.post(f"{url}/data/JSESSION", auth=("admin", "ädmin")).status_code == 401


# ----------------------------------------------------------------------------- E-4 labels


def _study_zip(tmp_path: Path, name: str) -> bytes:
    root = tmp_path / name
    study = generate_study(root, project="P1", series=1, instances_per_series=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in study.files:
            archive.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def test_an_over_long_label_is_a_400_naming_the_file_and_stores_nothing(
    xnat_emulator: XNATEmulator, client: httpx.Client, tmp_path: Path
) -> None:
    assert client.put("/data/projects/P1").status_code == 200
    zipped = _study_zip(tmp_path, "a")
    for params in (
        {"project": "P1", "subject": "S1", "session": "E" * 300},
        {"project": "P1", "subject": "S" * 300, "session": "E1"},
        {"dest": f"/archive/projects/P1/subjects/S1/experiments/{'E' * 300}"},
    ):
        reply = client.post(
            IMPORT, params=params, content=zipped, headers={"Content-Type": "application/zip"}
        )
        assert reply.status_code == 400, reply.text
        assert "unable to read DICOM object" in reply.text and ".dcm" in reply.text
        assert "Traceback" not in reply.text and "Emulator error" not in reply.text
    dcm = next((tmp_path / "a").rglob("*.dcm")).read_bytes()
    gradual = client.post(
        IMPORT,
        params={"PROJECT_ID": "P1", "SUBJECT_ID": "S1", "EXPT_LABEL": "G" * 256},
        content=dcm,
        headers={"Content-Type": "application/dicom"},
    )
    assert gradual.status_code == 400 and "unable to read DICOM object" in gradual.text
    assert client.get("/data/prearchive/projects/P1").json()["ResultSet"]["Result"] == []
    assert client.get("/data/projects/P1/experiments").json()["ResultSet"]["Result"] == []
    # 255 bytes is still a legal folder name
    ok = client.post(
        IMPORT,
        params={"project": "P1", "subject": "S1", "session": "E" * 255},
        content=zipped,
        headers={"Content-Type": "application/zip"},
    )
    assert ok.status_code == 200, ok.text


def test_labels_with_spaces_or_accents_are_cleaned_when_archived(
    client: httpx.Client, tmp_path: Path
) -> None:
    # XNAT's archiver cleans labels (spaces and other characters become "_"); the 417 for
    # invalid label characters belongs to the item PUT/POST routes, not to the importer
    assert client.put("/data/projects/P1").status_code == 200
    reply = client.post(
        IMPORT,
        params={
            "project": "P1",
            "subject": "Jöe Doe",
            "session": "MR 1",
            "dest": "/archive/projects/P1",
        },
        content=_study_zip(tmp_path, "b"),
        headers={"Content-Type": "application/zip"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.text.strip() == "/data/archive/projects/P1/subjects/J_e_Doe/experiments/MR_1"
    # the item routes refuse the same characters with 417
    refused = client.put(
        "/data/projects/P1/subjects/S1/experiments/MR 2", params={"xsiType": "xnat:mrSessionData"}
    )
    assert refused.status_code == 417


# ----------------------------------------------------------------------------- E-5 disconnects


def test_a_client_that_disconnects_mid_body_is_not_logged_as_an_emulator_error(
    xnat_emulator: XNATEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="xnat_prefect.testing.app")
    tmp_dir = xnat_emulator.state.store.tmp_dir if xnat_emulator.state else None
    assert tmp_dir is not None
    host, port = _host_port(xnat_emulator)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"PUT /data/projects/P1/resources/R/files/big.bin?inbody=true HTTP/1.1\r\n"
            + f"Host: {host}\r\n".encode()
            + b"Authorization: Basic YWRtaW46YWRtaW4=\r\n"
            + b"Content-Type: application/octet-stream\r\n"
            + b"Content-Length: 10000000\r\n\r\n"
            + b"x" * 65536
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any("client disconnected" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.05)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert any(level == logging.DEBUG and "client disconnected" in m for level, m in messages)
    assert not [m for level, m in messages if level >= logging.WARNING], messages
    assert not list(Path(tmp_dir).glob("body-*"))  # the half body is not left behind
    assert httpx.get(f"{xnat_emulator.url}/emulator/health").status_code == 200


# ----------------------------------------------------------------------------- E-6 drop


def test_drop_closes_before_the_status_line_and_does_not_run_the_handler(
    xnat_emulator: XNATEmulator, client: httpx.Client
) -> None:
    rule = xnat_emulator.add_fault(r"^PUT /data/projects/P9$", "drop", times=1)
    host, port = _host_port(xnat_emulator)
    received = b""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"PUT /data/projects/P9 HTTP/1.1\r\n"
            + f"Host: {host}\r\n".encode()
            + b"Authorization: Basic YWRtaW46YWRtaW4=\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    assert received == b""  # no status line, no headers, no foreign body bytes
    assert rule.fired == 1 and xnat_emulator.metrics()["faults"] == {"drop": 1}
    assert client.get("/data/projects/P9", params={"format": "json"}).status_code == 404
    assert client.put("/data/projects/P9").status_code == 200  # the rule is spent


def test_drop_fault_surfaces_as_a_protocol_error_and_is_counted(
    xnat_emulator: XNATEmulator, client: httpx.Client
) -> None:
    xnat_emulator.add_fault(r"^GET /data/projects$", "drop", rate=1.0, times=2)
    for _ in range(2):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get("/data/projects")
    assert client.get("/data/projects").status_code == 200
    metrics = xnat_emulator.metrics()
    assert metrics["faults"] == {"drop": 2}
    assert metrics["requests"]["GET /data/projects"] == 3
    assert metrics["statuses"]["GET /data/projects"] == {"200": 1}
