"""Downloads: per-file GETs with resume, verification and the ledger; zip downloads; zip-slip."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from xnat_prefect.client import XNATClient
from xnat_prefect.dicom.archives import UnsafeArchiveError
from xnat_prefect.errors import InvalidInputError, ResourceNotFoundError
from xnat_prefect.models.transfer import DownloadProgress
from xnat_prefect.services.downloads import DownloadService
from xnat_prefect.testing.server import XNATEmulator

FILES = "/files/"
DCM_ROUTE = r"GET /data/experiments/[^ ]*/files/.*\.dcm"
CUT = 20_000


@dataclass
class Archived:
    experiment_id: str
    digests: dict[str, str]  # file name -> md5
    sizes: dict[str, int]
    report: bytes

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


@pytest.fixture
def archived(client: XNATClient, rest: Any, tmp_path: Path) -> Archived:
    """P1/SUBJ1/SESS1 with scans 1 (T1_MPRAGE) and 2 (T2_FLAIR), 3 files each, plus QC/report.txt.

    Seeded with one raw DICOM-zip import straight into the archive.
    """
    experiment_id = rest.archive_study(
        tmp_path / "seed", series=2, instances_per_series=3, target_file_bytes=60_000
    )
    report = b"quality is fine\n" * 50
    client.put(
        f"/data/experiments/{experiment_id}/resources/QC/files/report.txt",
        params={"inbody": "true"}, content=report, headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    rows = rest.session_files(experiment_id)
    return Archived(
        experiment_id,
        {r["Name"]: r["digest"] for r in rows},
        {r["Name"]: int(r["Size"]) for r in rows},
        report,
    )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dcm_files(root: Path) -> dict[str, Path]:
    return {p.name: p for p in root.rglob("*.dcm")}


def _bytes_out(emulator: XNATEmulator) -> int:
    return sum(v for k, v in emulator.metrics()["bytes_out"].items() if FILES in k)


@dataclass
class Interrupted:
    out: Path
    final: Path  # the file whose transfer broke off (not written)
    partial: int  # the size of its .part


@pytest.fixture
def interrupted(
    client: XNATClient, xnat_emulator: XNATEmulator, archived: Archived, tmp_path: Path
) -> Interrupted:
    """A run into ``tmp_path/out`` in which one file's transfer always breaks off.

    Every attempt (one per pass, no per-request retries) adds CUT bytes to the .part. The
    emulator's metrics are reset after the run.
    """
    out = tmp_path / "out"
    name = sorted(archived.digests)[0]
    xnat_emulator.set_options(honor_range=True)  # resume needs 206 (real XNAT sends the whole file)
    xnat_emulator.add_fault(rf"GET .*/files/{name}", "truncate", truncate_at=CUT)
    service = DownloadService(client, max_retries=0, backoff_base=0.001, scan_zips=False)
    first = service.download_session("SESS1", out, project="P1", parallel=False)
    xnat_emulator.clear_faults()
    assert first.failed == 1 and first.downloaded == 6  # 5 DICOM + the report
    [(failed_path, reason)] = first.errors
    assert "connection failed" in reason
    final = Path(failed_path)
    part = final.with_name(final.name + ".part")
    assert final.name == name and not final.exists()
    size = part.stat().st_size
    assert size == 2 * CUT < archived.sizes[name]  # two passes, each resumed where it stopped
    xnat_emulator.reset_metrics()
    return Interrupted(out, final, size)


def test_download_session_layout_checksums_and_filters(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    seen: list[DownloadProgress] = []
    summary = downloads.download_session(
        "SESS1", tmp_path / "out", project="P1", verify=True, progress_callback=seen.append
    )
    assert summary.success and summary.verified
    assert (summary.total_files, summary.downloaded, summary.skipped) == (7, 7, 0)
    assert 0 < summary.bytes_received <= 1.05 * (archived.total + len(archived.report))
    session = tmp_path / "out" / "SESS1"
    assert (session / "resources" / "QC" / "files" / "report.txt").read_bytes() == archived.report
    t1 = list((session / "scans" / "1-T1_MPRAGE" / "resources" / "DICOM" / "files").iterdir())
    t2 = list((session / "scans" / "2-T2_FLAIR" / "resources" / "DICOM" / "files").iterdir())
    assert len(t1) == len(t2) == 3
    got = _dcm_files(session)
    assert {n: _md5(p) for n, p in got.items()} == archived.digests
    assert not list(tmp_path.rglob("*.part"))
    assert seen[-1].phase == "done" and seen[-1].current == seen[-1].total == 7
    assert seen[-1].total_bytes == archived.total + len(archived.report)  # the catalog sizes
    assert seen[-1].bytes_received == summary.bytes_received  # on the wire (zips are deflated)
    only_dicom = downloads.download_session(
        archived.experiment_id, tmp_path / "o2", include_resources=False
    )
    assert only_dicom.total_files == 6
    reports = downloads.download_session("SESS1", tmp_path / "o3", project="P1", pattern="*.txt")
    assert [p.name for p in reports.paths] == ["report.txt"]
    t2_only = downloads.download_session(
        "SESS1", tmp_path / "o4", project="P1", pattern="*/scans/2-*", workers=2
    )
    assert t2_only.total_files == 3
    with pytest.raises(ResourceNotFoundError):
        downloads.download_session("NOPE", tmp_path / "o5", project="P1")


def test_a_fresh_session_comes_as_one_zip_per_scan(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    xnat_emulator.reset_metrics()
    summary = downloads.download_session("SESS1", tmp_path / "out", project="P1", verify=True)
    assert summary.success and summary.verified and summary.downloaded == 7
    requests = xnat_emulator.metrics()["requests"]
    assert requests["GET /data/experiments/{experiment}/scans/{scan}/files"] == 1 + 2  # list, zips
    singles = {k: v for k, v in requests.items() if k.startswith("GET") and "/files/{path" in k}
    assert sum(singles.values()) == 1  # only the session resource file
    got = _dcm_files(tmp_path / "out")
    assert {n: _md5(p) for n, p in got.items()} == archived.digests
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".xnat-zips")]


def test_a_failed_scan_zip_falls_back_to_single_files(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    xnat_emulator.add_fault(r"GET /data/experiments/[^/]+/scans/1/files$", "status", status=404)
    xnat_emulator.reset_metrics()
    summary = downloads.download_session("SESS1", tmp_path / "out", project="P1", verify=True)
    assert summary.success and summary.verified and summary.downloaded == 7
    requests = xnat_emulator.metrics()["requests"]
    singles = {k: v for k, v in requests.items() if k.startswith("GET") and "/files/{path" in k}
    assert sum(singles.values()) == 1 + 3  # the report and scan 1's files


def test_a_second_download_transfers_nothing(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    downloads.download_session("SESS1", tmp_path / "out", project="P1")
    xnat_emulator.reset_metrics()
    again = downloads.download_session("SESS1", tmp_path / "out", project="P1", verify=True)
    assert (again.downloaded, again.skipped, again.failed) == (0, 7, 0) and again.verified
    assert _bytes_out(xnat_emulator) == 0


def test_a_dropped_transfer_resumes_with_range_in_the_same_call(
    xnat_emulator: XNATEmulator, client: XNATClient, archived: Archived, tmp_path: Path
) -> None:
    xnat_emulator.set_options(honor_range=True)  # a Range-capable server (XNAT is not)
    xnat_emulator.add_fault(DCM_ROUTE, "truncate", truncate_at=CUT, times=1)
    per_file = DownloadService(client, backoff_base=0.001, scan_zips=False)
    summary = per_file.download_session("SESS1", tmp_path / "out", project="P1", verify=True)
    assert summary.success and summary.verified and summary.downloaded == 7
    assert _bytes_out(xnat_emulator) == archived.total + len(archived.report)  # no byte twice


def test_resume_after_an_interrupted_run_sends_only_the_remaining_bytes(
    xnat_emulator: XNATEmulator,
    downloads: DownloadService,
    archived: Archived,
    interrupted: Interrupted,
) -> None:
    out, final, partial = interrupted.out, interrupted.final, interrupted.partial
    resumed = downloads.download_session("SESS1", out, project="P1", resume=True, verify=True)
    assert resumed.success and resumed.verified
    assert (resumed.downloaded, resumed.skipped) == (1, 6)
    assert _bytes_out(xnat_emulator) == archived.sizes[final.name] - partial
    assert _md5(final) == archived.digests[final.name]


def test_without_resume_a_partial_file_is_restarted(
    xnat_emulator: XNATEmulator,
    downloads: DownloadService,
    archived: Archived,
    interrupted: Interrupted,
) -> None:
    out, final = interrupted.out, interrupted.final
    again = downloads.download_session("SESS1", out, project="P1", resume=False)
    assert again.success and again.downloaded == 1
    assert _bytes_out(xnat_emulator) == archived.sizes[final.name]


def test_a_server_ignoring_range_makes_the_file_restart(
    xnat_emulator: XNATEmulator,
    downloads: DownloadService,
    archived: Archived,
    interrupted: Interrupted,
) -> None:
    out, final = interrupted.out, interrupted.final
    xnat_emulator.add_fault(DCM_ROUTE, "ignore_range")
    resumed = downloads.download_session("SESS1", out, project="P1", resume=True, verify=True)
    assert resumed.success and resumed.verified and resumed.downloaded == 1
    assert _bytes_out(xnat_emulator) == archived.sizes[final.name]  # 200: whole file again
    assert xnat_emulator.metrics()["faults"] == {"ignore_range": 1}
    assert _md5(final) == archived.digests[final.name]


def test_verify_rehashes_a_local_copy_corrupted_behind_the_ledgers_back(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    downloads.download_session("SESS1", out, project="P1")
    victim = sorted(_dcm_files(out).values())[0]
    stat = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-10:] = b"X" * 10
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    trusting = downloads.download_session("SESS1", out, project="P1")
    assert trusting.skipped == 7  # without verify the ledger is trusted
    xnat_emulator.reset_metrics()
    checked = downloads.download_session("SESS1", out, project="P1", verify=True)
    assert checked.success and checked.verified and (checked.downloaded, checked.skipped) == (1, 6)
    assert _md5(victim) == archived.digests[victim.name]
    assert _bytes_out(xnat_emulator) == archived.sizes[victim.name]


def test_verify_catches_corrupted_server_bytes(
    xnat_emulator: XNATEmulator,
    client: XNATClient,
    downloads: DownloadService,
    archived: Archived,
    tmp_path: Path,
) -> None:
    rows = client.get_result_set(
        f"/data/experiments/{archived.experiment_id}/scans/1/resources/DICOM/files",
        params={"locator": "absolutePath"},
    )
    on_server = Path(rows[0]["absolutePath"])
    data = bytearray(on_server.read_bytes())
    data[200:210] = b"corrupted!"
    on_server.write_bytes(bytes(data))  # the catalog digest still has the original MD5
    summary = downloads.download_session("SESS1", tmp_path / "out", project="P1", verify=True)
    assert not summary.success and not summary.verified
    assert (summary.downloaded, summary.failed) == (6, 1)
    [(path, reason)] = summary.errors
    assert path.endswith(on_server.name) and "MD5" in reason and "corrupt" in reason
    assert not Path(path).exists() and not list(tmp_path.rglob("*.part"))


def test_download_scan_with_a_resource_filter(
    downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    summary = downloads.download_scan(
        "SESS1", "2", tmp_path / "out", project="P1", resource="DICOM"
    )
    assert summary.success and summary.downloaded == 3
    assert all("/scans/2-T2_FLAIR/resources/DICOM/files/" in str(p) for p in summary.paths)
    with pytest.raises(ResourceNotFoundError):
        downloads.download_scan(archived.experiment_id, "9", tmp_path / "out")


def test_download_scans_in_one_request_with_extract_and_cleanup(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    xnat_emulator.reset_metrics()
    summary = downloads.download_scans(
        "SESS1", ["1", "2"], tmp_path / "out", project="P1", subject="SUBJ1", extract=True
    )
    requests = xnat_emulator.metrics()["requests"]
    assert [k for k in requests if FILES in k or k.endswith("/files")] == [
        "GET /data/experiments/{experiment}/scans/{scan}/files"
    ]
    assert requests["GET /data/experiments/{experiment}/scans/{scan}/files"] == 1
    assert summary.success and summary.downloaded == 6
    assert not (tmp_path / "out" / "scans.zip").exists()  # cleanup
    got = _dcm_files(tmp_path / "out")
    assert {n: _md5(p) for n, p in got.items()} == archived.digests
    kept = downloads.download_scans(
        archived.experiment_id, ["ALL"], tmp_path / "z", resource="DICOM", zip_filename="all.zip"
    )
    assert kept.paths == [tmp_path / "z" / "all.zip"]
    with zipfile.ZipFile(kept.paths[0]) as zf:
        assert len(zf.namelist()) == 6
    # re-extracting over existing files replaces them
    again = downloads.download_scans("SESS1", ["1"], tmp_path / "out", project="P1", extract=True)
    assert again.success and again.downloaded == 3
    with pytest.raises(InvalidInputError):
        downloads.download_scans("SESS1", [], tmp_path / "out", project="P1")
    with pytest.raises(InvalidInputError):
        downloads.download_scans("SESS1", ["1,2"], tmp_path / "out", project="P1")


def test_download_resource_zip_and_extract(
    downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    summary = downloads.download_resource(archived.experiment_id, "QC", tmp_path / "out")
    assert summary.paths == [tmp_path / "out" / "QC.zip"]
    extracted = downloads.download_resource(
        "SESS1", "QC", tmp_path / "x", project="P1", extract=True, zip_filename="qc.zip"
    )
    [path] = extracted.paths
    assert path.read_bytes() == archived.report and not (tmp_path / "x" / "qc.zip").exists()
    scan_res = downloads.download_resource(
        archived.experiment_id, "DICOM", tmp_path / "s", scan_id="1"
    )
    with zipfile.ZipFile(scan_res.paths[0]) as zf:
        assert len(zf.namelist()) == 3
    with pytest.raises(InvalidInputError, match="plain file name"):
        downloads.download_resource("X", "QC", tmp_path, zip_filename="../evil.zip")
    with pytest.raises(ResourceNotFoundError):
        downloads.download_resource(archived.experiment_id, "NOPE", tmp_path / "n")


def test_assessors_listing_failure_is_reported(
    downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    """The emulator has no assessor routes: the summary must say so, not hide it."""
    summary = downloads.download_session(
        "SESS1", tmp_path / "out", project="P1", include_assessors=True
    )
    assert summary.downloaded == 7 and not summary.success
    [(what, reason)] = summary.errors
    assert what.endswith("/assessors") and "assessor listing failed" in reason


# --- hostile archives --------------------------------------------------------------------------


def _hostile_zip(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("SESS1/scans/1/ok.dcm", b"fine")
        if kind == "slip":
            zf.writestr("../../escaped.txt", b"gotcha")
        else:
            link = zipfile.ZipInfo("SESS1/link")
            link.external_attr = 0o120777 << 16
            zf.writestr(link, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture
def hostile_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A fake 'XNAT' answering every GET with the zip in ``payload['zip']``."""
    payload: dict[str, bytes] = {"zip": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = payload["zip"]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", payload
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("kind", ["slip", "symlink"])
def test_unsafe_zip_entries_are_refused(
    hostile_server: tuple[str, dict[str, bytes]], tmp_path: Path, kind: str
) -> None:
    url, payload = hostile_server
    payload["zip"] = _hostile_zip(kind)
    out = tmp_path / "deep" / "out"
    with XNATClient(url) as anonymous:
        service = DownloadService(anonymous, ledger=False)
        with pytest.raises(UnsafeArchiveError):
            service.download_scans("XNAT_E00001", ["1"], out, extract=True)
    assert (
        not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()
    )
    assert [p.name for p in out.iterdir()] == ["scans.zip"]  # nothing extracted, zip kept


def test_download_scan_without_a_resource_filter_uses_the_scan_zip(
    xnat_emulator: XNATEmulator, downloads: DownloadService, archived: Archived, tmp_path: Path
) -> None:
    xnat_emulator.reset_metrics()
    summary = downloads.download_scan(archived.experiment_id, "1", tmp_path / "out")
    assert summary.success and summary.downloaded == 3
    requests = xnat_emulator.metrics()["requests"]
    assert requests["GET /data/experiments/{experiment}/scans/{scan}/files"] == 1 + 1  # list, zip
    assert not any(k.startswith("GET") and "/files/{path" in k for k in requests)
    again = downloads.download_scan(archived.experiment_id, "1", tmp_path / "out")
    assert (again.downloaded, again.skipped) == (0, 3)
