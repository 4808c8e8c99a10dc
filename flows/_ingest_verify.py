"""Compare the local study with the archived session: scans, files per scan, UIDs, MD5.

* Scan count: every local series must be an archived scan (scan ID = Series Number).
* Files per scan: the scan's ``DICOM`` resource must list as many files as the series has.
* SOP Instance UIDs: when the resource's catalog (``GET .../resources/DICOM``) carries ``UID``
  attributes on its entries (real XNAT writes ``cat:dcmEntry UID=...``), every local UID must
  be there.
* MD5 (optional): every local file's MD5 must be among the catalog digests. Only meaningful when
  the site does not anonymize on receipt (XNAT's default site anonymization rewrites headers, so
  archived bytes differ), and never for C-STORE: a DICOM receiver writes its own Part-10 file
  meta (implementation class UID, version name), so no archived file has the source file's
  MD5 although the datasets are identical. With ``meta_rewritten`` the MD5 is skipped with a
  warning (:data:`META_REWRITTEN_WARNING`); counts and UIDs are still checked.

With ``allow_extra`` (merging into a session that already had data) archived scans, files and
UIDs that the source does not have are warnings, not failures.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from xnat_prefect.client import XNATClient
from xnat_prefect.errors import ResourceNotFoundError, VerificationError
from xnat_prefect.flows._ingest_source import LocalFile, SourceManifest
from xnat_prefect.flows.results import ScanCheck
from xnat_prefect.services import ResourceService, ScanService

__all__ = ["META_REWRITTEN_WARNING", "VerifyReport", "catalog_uids", "verify_archive"]

DICOM_RESOURCE = "DICOM"
META_REWRITTEN_WARNING = (
    "MD5 not checked: a C-STORE receiver writes its own DICOM file meta, so no archived "
    "file can have the source file's MD5 (the datasets are the same); scans, file counts and "
    "SOP Instance UIDs (where XNAT's catalog lists them) were verified instead"
)
_SHOWN = 5


@dataclass
class VerifyReport:
    """Per-scan checks and the warnings worth reporting.

    Attributes:
        scans: One check per local or archived scan.
        warnings: Non-fatal findings.

    Example:
        ```python
        report = verify_archive(client, "XNAT_E00001", manifest)
        print(report.ok, report.warnings)
        ```
    """

    scans: list[ScanCheck] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every scan check passed."""
        return all(s.ok for s in self.scans)


def catalog_uids(xml_text: str) -> list[str] | None:
    """SOP Instance UIDs listed by a catalog document, or None when its entries carry none.

    Args:
        xml_text: A ``cat:Catalog`` document.

    Returns:
        The UIDs (one per entry that has one), or None.

    Raises:
        VerificationError: The document declares a DTD or entities (refused) or is not XML.

    Example:
        ```python
        uids = catalog_uids(client.get(".../scans/1/resources/DICOM").text)
        ```
    """
    head = xml_text[:4096].upper()
    if "<!DOCTYPE" in head or "<!ENTITY" in head:
        raise VerificationError("the resource catalog declares a DTD; refusing to parse it")
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise VerificationError(f"the resource catalog is not valid XML ({exc})") from exc
    uids = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1].lower().endswith("entry"):
            uid = element.attrib.get("UID") or element.attrib.get("uid")
            if uid:
                uids.append(uid)
    return uids or None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_scan(
    client: XNATClient,
    experiment_id: str,
    scan_id: str,
    local: list[LocalFile],
    *,
    check_md5: bool,
    allow_extra: bool,
    report: VerifyReport,
) -> ScanCheck:
    resources = ResourceService(client)
    try:
        remote = resources.list_files(experiment_id, DICOM_RESOURCE, scan_id)
    except ResourceNotFoundError:
        return ScanCheck(scan_id=scan_id, local_files=len(local), archived_files=0, ok=False)
    check = ScanCheck(scan_id=scan_id, local_files=len(local), archived_files=len(remote))
    ok = len(remote) == len(local) or (allow_extra and len(remote) > len(local))
    response = client.get(
        f"/data/experiments/{experiment_id}/scans/{scan_id}/resources/{DICOM_RESOURCE}"
    )
    archived_uids = catalog_uids(response.text)
    if archived_uids is not None:
        local_uids = {f.sop_uid for f in local}
        remote_uids = set(archived_uids)
        check.uids_checked = True
        check.missing_uids = sorted(local_uids - remote_uids)
        check.unexpected_uids = sorted(remote_uids - local_uids)
        ok = ok and not check.missing_uids and (allow_extra or not check.unexpected_uids)
    if check_md5:
        digests = Counter(f.digest for f in remote if f.digest)
        if len(digests) and sum(digests.values()) == len(remote):
            check.md5_checked = True
            for item in local:
                value = _md5(item.path)
                if digests[value] > 0:
                    digests[value] -= 1
                else:
                    check.md5_mismatches += 1
            ok = ok and check.md5_mismatches == 0
        else:
            report.warnings.append(f"scan {scan_id}: XNAT lists no MD5 digests; MD5 not checked")
    check.ok = ok
    return check


def verify_archive(
    client: XNATClient,
    experiment_id: str,
    manifest: SourceManifest,
    *,
    check_md5: bool = False,
    allow_extra: bool = False,
    meta_rewritten: bool = False,
) -> VerifyReport:
    """Check the archived session against the source; raise on any mismatch.

    Args:
        client: A logged-in client.
        experiment_id: The archived session's accession ID.
        manifest: The local study.
        check_md5: Also compare MD5 digests.
        allow_extra: Archived data the source lacks is a warning, not a failure.
        meta_rewritten: The files were sent by C-STORE, so the receiver rewrote their file
            meta: ``check_md5`` is then skipped and :data:`META_REWRITTEN_WARNING` added to the
            report's warnings.

    Returns:
        The checks (all passed).

    Raises:
        VerificationError: A scan is missing, a scan lists a different number of files, a SOP
            Instance UID is missing, or an MD5 does not match; the message lists them.

    Example:
        ```python
        report = verify_archive(client, "XNAT_E00001", manifest, check_md5=True)
        ```
    """
    report = VerifyReport()
    if check_md5 and meta_rewritten:
        report.warnings.append(META_REWRITTEN_WARNING)
        check_md5 = False
    local_scans = manifest.by_scan()
    archived = {s.scan_id for s in ScanService(client).list(experiment_id)}
    for scan_id, files in local_scans.items():
        if scan_id not in archived:
            report.scans.append(
                ScanCheck(scan_id=scan_id, local_files=len(files), archived_files=0, ok=False)
            )
            continue
        report.scans.append(
            _check_scan(
                client,
                experiment_id,
                scan_id,
                files,
                check_md5=check_md5,
                allow_extra=allow_extra,
                report=report,
            )
        )
    extra = sorted(archived - set(local_scans))
    if extra:
        message = f"archive has scans the source does not: {', '.join(extra)}"
        if allow_extra:
            report.warnings.append(message)
        else:
            resources = ResourceService(client)
            for scan_id in extra:
                try:
                    count = len(resources.list_files(experiment_id, DICOM_RESOURCE, scan_id))
                except ResourceNotFoundError:
                    count = 0
                report.scans.append(
                    ScanCheck(scan_id=scan_id, local_files=0, archived_files=count, ok=False)
                )
    if not report.ok:
        raise VerificationError(
            f"{experiment_id} does not match the source: {_problems(report)}",
            target=experiment_id,
            status="MISMATCH",
        )
    return report


def _problems(report: VerifyReport) -> str:
    lines = []
    for scan in report.scans:
        if scan.ok:
            continue
        if scan.local_files == 0:
            lines.append(f"scan {scan.scan_id} is archived but not in the source")
            continue
        what = f"scan {scan.scan_id}: {scan.archived_files} of {scan.local_files} file(s)"
        if scan.missing_uids:
            shown = ", ".join(scan.missing_uids[:_SHOWN])
            what += f", {len(scan.missing_uids)} UID(s) missing ({shown})"
        if scan.unexpected_uids:
            what += f", {len(scan.unexpected_uids)} unexpected UID(s)"
        if scan.md5_mismatches:
            what += f", {scan.md5_mismatches} MD5 mismatch(es)"
        lines.append(what)
    return "; ".join(lines)
