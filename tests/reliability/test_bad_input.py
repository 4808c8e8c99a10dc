"""Suite 5 - bad input: a corpus of broken sources, ids, credentials, endpoints and disks.

One parametrized test walks the table. Every case must end in a TYPED error whose message names
the thing that is wrong and how to fix it (checked with the phrases in ``says``), never shows
the password, and leaves nothing half-written: no ``.part``/temporary file in the output folder,
no file under a final name that is not complete, and (for uploads refused before sending) no
prearchive or archive session on the server.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import SecretStr

from tests.reliability._proxy import AbortingProxy
from tests.reliability._support import Inspector, leftovers, record_figures
from xnat_prefect.blocks import DicomNode, XNATCredentials
from xnat_prefect.client import XNATClient
from xnat_prefect.dicom.store_scu import DicomNetworkError
from xnat_prefect.errors import (
    AuthenticationError,
    InvalidInputError,
    OperationError,
    ResourceNotFoundError,
    TransferError,
    XNATConnectionError,
)
from xnat_prefect.flows.download import download_sessions
from xnat_prefect.flows.ingest import ingest_dicom
from xnat_prefect.flows.pipelines import run_pipeline_and_wait
from xnat_prefect.services.downloads import DownloadService
from xnat_prefect.services.uploads import UploadService
from xnat_prefect.testing.synthetic import generate_study, write_non_dicom, write_truncated_dicom

PASSWORD = "admin"
LABELS = {"project": "P1", "subject": "SUBJ01", "session": "SUBJ01_MR1"}
FAST = {"stall_seconds": 5.0, "max_wait_seconds": 30.0, "poll_interval_seconds": 0.1}
RESULTS: list[dict[str, Any]] = []


@dataclass
class Ctx:
    """What a case may use."""

    lab: Inspector
    creds: XNATCredentials
    tmp_path: Path
    out: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def good_study(self, name: str = "good", files: int = 8) -> Path:
        folder = self.tmp_path / name
        generate_study(
            folder,
            project="P1",
            subject="SUBJ01",
            session="SUBJ01_MR1",
            series=2,
            instances_per_series=files // 2,
            rows=16,
            cols=16,
        )
        return folder

    def creds_for(self, url: str, **changes: Any) -> XNATCredentials:
        values: dict[str, Any] = {
            "url": url,
            "username": "admin",
            "password": SecretStr(PASSWORD),
            "timeout_seconds": 5.0,
            "max_retries": 1,
        }
        values.update(changes)
        return XNATCredentials(**values)

    def archived_session(self) -> str:
        return self.lab.seed_archive(self.good_study(), **LABELS)

    def ingest(self, source: Path | str, **options: Any) -> Any:
        merged = {**LABELS, **FAST, "transport": "gradual", **options}
        creds = merged.pop("creds", self.creds)
        return ingest_dicom(creds, str(source), **merged)


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        name: Test id.
        run: Performs the call (must raise).
        error: Expected exception type.
        says: Phrases the message must contain (case-insensitive): the thing and the fix.
        server_untouched: Nothing may reach the archive or the prearchive of P1.
        bug: A known, reported bug this case exposes (the case is a strict xfail until fixed).
    """

    name: str
    run: Callable[[Ctx], Any]
    error: type[BaseException]
    says: tuple[str, ...]
    server_untouched: bool = True
    bug: str | None = None


# --- sources ------------------------------------------------------------------------------------


def _non_dicom_file(ctx: Ctx) -> Any:
    return ctx.ingest(write_non_dicom(ctx.tmp_path / "notes.txt"))


def _folder_of_non_dicom(ctx: Ctx) -> Any:
    for n in range(3):
        write_non_dicom(ctx.tmp_path / "src" / f"file{n}.txt")
    return ctx.ingest(ctx.tmp_path / "src")


def _truncated_header(ctx: Ctx) -> Any:
    write_truncated_dicom(ctx.tmp_path / "src" / "bad.dcm", cut="header")
    return ctx.ingest(ctx.tmp_path / "src")


def _truncated_pixels_among_good(ctx: Ctx) -> Any:
    folder = ctx.good_study("src")
    victim = sorted(folder.rglob("*.dcm"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 200])  # the pixel data ends 200 bytes early
    return ctx.ingest(folder, verify_checksums=True)


def _empty_folder(ctx: Ctx) -> Any:
    (ctx.tmp_path / "empty").mkdir()
    return ctx.ingest(ctx.tmp_path / "empty")


def _missing_folder(ctx: Ctx) -> Any:
    return ctx.ingest(ctx.tmp_path / "does-not-exist")


def _zip_with(ctx: Ctx, name: str, write: Callable[[zipfile.ZipFile, Path], None]) -> Any:
    folder = ctx.good_study()
    archive = ctx.tmp_path / name
    with zipfile.ZipFile(archive, "w") as zf:
        write(zf, folder)
    return ctx.ingest(archive)


def _zip_slip(ctx: Ctx) -> Any:
    def write(zf: zipfile.ZipFile, folder: Path) -> None:
        zf.write(next(folder.rglob("*.dcm")), "../../escaped.dcm")

    return _zip_with(ctx, "slip.zip", write)


def _zip_absolute(ctx: Ctx) -> Any:
    def write(zf: zipfile.ZipFile, folder: Path) -> None:
        # writestr keeps the name as given (ZipFile.write would strip the leading "/")
        zf.writestr(zipfile.ZipInfo("/tmp/absolute.dcm"), next(folder.rglob("*.dcm")).read_bytes())

    return _zip_with(ctx, "absolute.zip", write)


def _zip_symlink(ctx: Ctx) -> Any:
    def write(zf: zipfile.ZipFile, folder: Path) -> None:
        for path in folder.rglob("*.dcm"):
            zf.write(path, path.relative_to(folder).as_posix())
        info = zipfile.ZipInfo("S001/link.dcm")
        info.external_attr = (0o120777 << 16) | 0
        zf.writestr(info, "/etc/passwd")

    return _zip_with(ctx, "symlink.zip", write)


def _zip_empty(ctx: Ctx) -> Any:
    return _zip_with(ctx, "empty.zip", lambda zf, folder: None)


def _corrupt_zip(ctx: Ctx) -> Any:
    archive = ctx.tmp_path / "corrupt.zip"
    folder = ctx.good_study()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*.dcm"):
            zf.write(path, path.relative_to(folder).as_posix())
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 3] + data[-200:])
    return ctx.ingest(archive)


def _two_studies(ctx: Ctx) -> Any:
    folder = ctx.good_study("src")
    generate_study(
        folder / "other",
        project="P1",
        subject="X",
        session="Y",
        series=1,
        instances_per_series=2,
        rows=16,
        cols=16,
        seed=9,
    )
    return ctx.ingest(folder)


def _symlinked_folder(ctx: Ctx) -> Any:
    outside = ctx.good_study("outside")
    (ctx.tmp_path / "src").mkdir()
    (ctx.tmp_path / "src" / "link").symlink_to(outside, target_is_directory=True)
    return ctx.ingest(ctx.tmp_path / "src")


# --- ids and labels -----------------------------------------------------------------------------


def _label_case(**labels: str) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        return ctx.ingest(ctx.good_study(), **labels)

    return run


# --- credentials and endpoints ------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrong_password(ctx: Ctx) -> Any:
    creds = ctx.creds_for(ctx.lab.emulator.url, password=SecretStr("Wr0ng-Passw0rd!"))
    return ctx.ingest(ctx.good_study(), creds=creds)


def _wrong_alias_token(ctx: Ctx) -> Any:
    creds = ctx.creds_for(
        ctx.lab.emulator.url,
        username=None,
        password=None,
        alias_token="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        alias_secret=SecretStr("NotTheSecret123"),
    )
    return download_sessions(creds, ["XNAT_E00001"], str(ctx.out))


def _unreachable_host(ctx: Ctx) -> Any:
    creds = ctx.creds_for(f"http://127.0.0.1:{_closed_port()}")
    return run_pipeline_and_wait(creds, "any-wrapper", ["XNAT_E00001"], max_wait_seconds=5)


def _https_to_plain_http(ctx: Ctx) -> Any:
    creds = ctx.creds_for(ctx.lab.emulator.url.replace("http://", "https://"))
    return download_sessions(creds, ["XNAT_E00001"], str(ctx.out))


def _self_signed_tls(ctx: Ctx) -> Any:
    key, cert = ctx.tmp_path / "key.pem", ctx.tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    ctx.cleanups.append(stop)
    creds = ctx.creds_for(f"https://localhost:{server.server_address[1]}")
    return download_sessions(creds, ["XNAT_E00001"], str(ctx.out))


def _cstore(ctx: Ctx, **node: Any) -> Any:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": ctx.lab.emulator.dicom_port,
        "called_ae_title": ctx.lab.emulator.dicom_ae_title,
        "timeout_seconds": 3,
    }
    values.update(node)
    return ingest_dicom(
        ctx.creds,
        str(ctx.good_study()),
        transport="cstore",
        dicom_node=DicomNode(**values),
        **FAST,
    )


# --- downloads ----------------------------------------------------------------------------------


def _download_missing_session(ctx: Ctx) -> Any:
    return download_sessions(ctx.creds, ["XNAT_E99999"], str(ctx.out))


def _download_bad_session_id(ctx: Ctx) -> Any:
    return download_sessions(ctx.creds, ["../../etc"], str(ctx.out))


def _download_output_is_a_file(ctx: Ctx) -> Any:
    experiment = ctx.archived_session()
    ctx.out.parent.mkdir(parents=True, exist_ok=True)
    ctx.out.write_text("I am a file")
    return download_sessions(ctx.creds, [experiment], str(ctx.out))


def _session_with_a_big_file_and_a_full_disk(ctx: Ctx) -> str:
    """An archived session with a 3 MiB incompressible resource file; ``ctx.out`` a 1 MiB tmpfs."""
    experiment = ctx.archived_session()
    big = os.urandom(3 * 1024 * 1024)
    reply = ctx.lab.rest.put(
        f"/data/experiments/{experiment}/resources/BIG/files/big.bin",
        content=big,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert reply.status_code == 200
    ctx.out.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ctx.out)], capture_output=True
    )
    if mounted.returncode != 0:  # an environment problem: a real failure
        pytest.fail(f"tmpfs mount failed (the case needs root): {mounted.stderr!r}")
    ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", str(ctx.out)], check=False))
    return experiment


def _download_full_disk(ctx: Ctx) -> Any:
    experiment = _session_with_a_big_file_and_a_full_disk(ctx)
    return download_sessions(ctx.creds, [experiment], str(ctx.out))


def _download_zip_full_disk(ctx: Ctx) -> Any:
    experiment = _session_with_a_big_file_and_a_full_disk(ctx)
    with ctx.creds.get_client() as client:
        return DownloadService(client).download_resource(experiment, "BIG", ctx.out)


# --- transfers of files that change -------------------------------------------------------------


def _file_changes_while_uploaded(ctx: Ctx) -> Any:
    """A resource file is rewritten while its upload is streaming (through a slow link)."""
    experiment = ctx.archived_session()
    source = ctx.tmp_path / "growing.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    port = int(ctx.lab.emulator.url.rsplit(":", 1)[1])
    proxy = AbortingProxy("127.0.0.1", port, up_bytes_per_second=1.0e6).start()
    ctx.cleanups.append(proxy.stop)

    def rewrite() -> None:
        Inspector.wait_for(lambda: proxy.stats.bytes_up > 512 * 1024, 30, 0.01)
        with source.open("r+b") as handle:
            handle.seek(1024)
            handle.write(os.urandom(4096))

    changer = threading.Thread(target=rewrite, daemon=True)
    changer.start()
    ctx.cleanups.append(lambda: changer.join(30))
    with XNATClient(f"http://127.0.0.1:{proxy.port}", "admin", PASSWORD) as client:
        summary = UploadService(client, backoff_base=0.05, max_retries=1).upload_resource(
            experiment, "CHANGING", source
        )
    if summary.failed or summary.errors:
        raise TransferError(f"{summary.errors}", target=str(source))
    return summary


def _unknown_pipeline(ctx: Ctx) -> Any:
    ctx.lab.project("P2")
    reply = ctx.lab.rest.put(
        "/data/projects/P2/subjects/S1/experiments/S1_MR1", params={"xsiType": "xnat:mrSessionData"}
    )
    return run_pipeline_and_wait(
        ctx.creds,
        "no-such-wrapper",
        [reply.text.strip()],
        max_wait_seconds=5,
        poll_interval_seconds=0.1,
    )


def _flow_option(**options: Any) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        return ctx.ingest(ctx.good_study(), **options)

    return run


def _download_no_sessions(ctx: Ctx) -> Any:
    return download_sessions(ctx.creds, [], str(ctx.out))


def _download_zero_workers(ctx: Ctx) -> Any:
    return download_sessions(ctx.creds, ["XNAT_E00001"], str(ctx.out), workers_per_session=0)


def _credentials_in_url(ctx: Ctx) -> Any:
    creds = ctx.creds_for(ctx.lab.emulator.url.replace("http://", "http://admin:admin@"))
    return download_sessions(creds, ["XNAT_E00001"], str(ctx.out))


CASES: list[Case] = [
    # sources
    Case("non-dicom-file", _non_dicom_file, InvalidInputError, ("notes.txt", "folder of dicom")),
    Case("folder-of-non-dicom", _folder_of_non_dicom, InvalidInputError, ("no dicom", "src")),
    Case("truncated-header", _truncated_header, TransferError, ("bad.dcm", "parse")),
    Case(
        "truncated-pixels",
        _truncated_pixels_among_good,
        TransferError,
        ("IM0001", "parse"),
        server_untouched=False,  # the good files of the study were sent and archived
    ),
    Case("empty-folder", _empty_folder, InvalidInputError, ("no dicom", "empty")),
    Case("missing-folder", _missing_folder, InvalidInputError, ("does-not-exist", "does not")),
    Case("zip-slip", _zip_slip, InvalidInputError, ("escaped.dcm", "relative paths")),
    Case("zip-absolute-path", _zip_absolute, InvalidInputError, ("absolute.dcm", "absolute")),
    Case("zip-symlink", _zip_symlink, InvalidInputError, ("link.dcm", "symbolic link")),
    Case("zip-empty", _zip_empty, InvalidInputError, ("no dicom", "empty.zip")),
    Case("zip-corrupt", _corrupt_zip, InvalidInputError, ("corrupt.zip", "not corrupt")),
    Case("two-studies", _two_studies, InvalidInputError, ("2 studies", "separately")),
    Case("symlinked-folder", _symlinked_folder, InvalidInputError, ("no dicom", "src")),
    # ids and labels
    Case("project-dotdot", _flow_option(project="../P1"), InvalidInputError, ("project", "..")),
    Case("project-slash", _flow_option(project="/P1"), InvalidInputError, ("project", "'/'")),
    Case("subject-slash", _flow_option(subject="A/B"), InvalidInputError, ("subject", "'/'")),
    Case("session-dotdot", _flow_option(session="..%2F"), InvalidInputError, ("session", "..")),
    Case(
        "subject-unicode",
        _flow_option(subject="Sübject✓"),
        InvalidInputError,
        ("subject", "letters, digits"),
    ),
    Case(
        "session-very-long",
        _flow_option(session="S" * 300),
        InvalidInputError,
        ("session", "shorten"),
    ),
    Case("subject-empty", _flow_option(subject=""), InvalidInputError, ("subject", "pass them")),
    Case("session-space", _flow_option(session="MR 1"), InvalidInputError, ("session", "'_'")),
    Case("transport-unknown", _flow_option(transport="ftp"), ParameterTypeError, ("transport",)),
    Case("batches-zero", _flow_option(batches=0), InvalidInputError, ("batches", ">= 1")),
    Case("stall-zero", _flow_option(stall_seconds=0.0), InvalidInputError, ("stall_seconds",)),
    # credentials and endpoints
    Case("wrong-password", _wrong_password, AuthenticationError, ("admin", "password")),
    Case("wrong-alias-token", _wrong_alias_token, AuthenticationError, ("alias", "token")),
    Case("credentials-in-url", _credentials_in_url, ValueError, ("credentials",)),
    Case(
        "unreachable-host", _unreachable_host, XNATConnectionError, ("127.0.0.1", "check the url")
    ),
    Case("https-to-plain-http", _https_to_plain_http, XNATConnectionError, ("tls", "http://")),
    Case("self-signed-tls", _self_signed_tls, XNATConnectionError, ("certificate", "ca_bundle")),
    Case(
        "wrong-ae-title",
        lambda ctx: _cstore(ctx, called_ae_title="NOTXNAT"),
        DicomNetworkError,
        ("NOTXNAT", "ae title"),
    ),
    # downloads and disks
    Case("download-missing-session", _download_missing_session, ResourceNotFoundError, ("E99999",)),
    Case("download-bad-id", _download_bad_session_id, InvalidInputError, ("'../../etc'", "..")),
    Case("download-no-sessions", _download_no_sessions, InvalidInputError, ("at least one",)),
    Case("download-zero-workers", _download_zero_workers, InvalidInputError, ("workers", ">= 1")),
    Case(
        "download-output-is-a-file",
        _download_output_is_a_file,
        InvalidInputError,
        ("out", "not a folder", "pass a folder path"),
        server_untouched=False,
    ),
    Case(
        "download-full-disk",
        _download_full_disk,
        TransferError,
        ("no space", "big.bin", "free at least", "bytes", "output_dir"),
        server_untouched=False,
    ),
    Case(
        "download-zip-full-disk",
        _download_zip_full_disk,
        TransferError,
        ("no space", "BIG", "output_dir", "run again"),
        server_untouched=False,
    ),
    Case(
        "file-changes-while-uploaded",
        _file_changes_while_uploaded,
        OperationError,
        ("growing.bin", "changed while it was being uploaded", "upload it again"),
        server_untouched=False,
    ),
    Case("unknown-pipeline", _unknown_pipeline, ResourceNotFoundError, ("no-such-wrapper", "P2")),
]


@pytest.fixture(scope="module", autouse=True)
def _record() -> Iterator[None]:
    yield
    record_figures("bad-input", cases=len(CASES), results=RESULTS)


@pytest.fixture
def ctx(lab: Inspector, creds: XNATCredentials, tmp_path: Path) -> Iterator[Ctx]:
    lab.project("P1")
    context = Ctx(lab, creds, tmp_path, tmp_path / "out")
    try:
        yield context
    finally:
        for cleanup in reversed(context.cleanups):
            cleanup()


def test_the_corpus_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


def _param(case: Case) -> Any:
    marks = []
    if case.bug:
        marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.bug))
    return pytest.param(case, id=case.name, marks=marks)


def _typed_as(error: BaseException, expected: type[BaseException]) -> bool:
    """The error itself is of the expected type (a generic wrapper hiding it fails: BUG-6)."""
    return isinstance(error, expected)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_a_typed_error_naming_the_thing_and_the_fix(
    prefect: None, ctx: Ctx, case: Case
) -> None:
    try:
        case.run(ctx)
    except Exception as exc:
        error: BaseException = exc
    else:
        RESULTS.append({"case": case.name, "error": None, "message": "no error"})
        raise AssertionError(f"{case.name}: no error was raised")
    message = str(error)
    RESULTS.append({"case": case.name, "error": type(error).__name__, "message": message[:300]})
    assert _typed_as(error, case.error), f"{type(error).__name__}: {message}"
    lowered = message.lower()
    missing = [phrase for phrase in case.says if phrase.lower() not in lowered]
    assert not missing, f"message lacks {missing}: {message}"
    assert "Wr0ng-Passw0rd!" not in message + repr(error)
    assert leftovers(ctx.out) == [], "half-written files left behind"
    if ctx.out.is_dir():
        assert not list(ctx.out.rglob(".xnat-zips-*"))
    if case.server_untouched:
        assert ctx.lab.prearchive("P1") == []
        assert ctx.lab.experiments("P1") == []
