"""Receiving DICOM files into the prearchive (C-STORE receiver, gradual-DICOM, zip imports).

A file is routed with XNAT's rules (``dicom_headers.route``; upload parameters override them),
added to the open session of its study in that project (created when needed: timestamp folder
``YYYYMMDD_HHMMSSmmm``, session folder = session label) and moved into
``SCANS/{scan}/DICOM/{study}-{series}-{instance}-{hash}.dcm``. The same SOP Instance UID
twice replaces the earlier file. Lookup, insert and the file move run under the store lock.
When site or project anonymization is enabled the file is rewritten first (:mod:`_anon`);
routing uses the headers as received, as XNAT identifies a file before anonymizing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

from xnat_prefect.testing.dicom_headers import (
    DEFAULT_SESSION_LABEL,
    DicomHeader,
    clean_label,
    read_header,
    route,
    scan_id_for,
    xsi_types_for_modality,
)
from xnat_prefect.testing.routes._anon import anonymize, scripts_for
from xnat_prefect.testing.routes._prearc import (
    DIRECT,
    LOCKED_STATUSES,
    MAX_LABEL_BYTES,
    OPEN_STATUSES,
    PREARCHIVE,
    UNASSIGNED,
    LabelTooLongError,
    NotDicomError,
    PrearcKey,
    PrearcLockedError,
    ReceiveOptions,
    add_log,
    autoarchive_text,
    key_of,
    load,
    move_file,
    session_dir,
)
from xnat_prefect.testing.state import EmulatorState
from xnat_prefect.testing.store import Row, now_text

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9.\-]")


def dicom_date(value: str) -> str:
    """``YYYYMMDD`` → ``YYYY-MM-DD`` (``""`` when malformed).

    Args:
        value: DICOM DA.

    Returns:
        The ISO date.
    """
    value = value.strip()
    if len(value) >= 8 and value[:8].isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    return ""


def dicom_time(value: str) -> str:
    """``HHMMSS[.ffff]`` → ``HH:MM:SS`` (``""`` when malformed).

    Args:
        value: DICOM TM.

    Returns:
        The time.
    """
    digits = value.strip().split(".")[0].replace(":", "")
    if len(digits) >= 4 and digits.isdigit():
        digits = (digits + "00")[:6]
        return f"{digits[:2]}:{digits[2:4]}:{digits[4:6]}"
    return ""


def file_name(header: DicomHeader) -> str:
    """The name a received file gets (study, series, instance and a SOP hash, like XNAT).

    Args:
        header: The file's header.

    Returns:
        A file name safe on any file system.
    """
    digest = hashlib.md5(
        f"{header.sop_class_uid}{header.sop_instance_uid}".encode(), usedforsecurity=False
    ).hexdigest()[:8]
    parts = (header.study_instance_uid, header.series_number or "0", header.instance_number or "0")
    return _UNSAFE_NAME.sub("_", "-".join(parts)) + f"-{digest}.dcm"


def md5_file(path: Path) -> str:
    """MD5 of a file, read in chunks.

    Args:
        path: The file.

    Returns:
        Hex digest.
    """
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _timestamp(when: datetime) -> str:
    return when.strftime("%Y%m%d_%H%M%S%f")[:-3]


# ----------------------------------------------------------------------------- receiving


def store_received_file(
    state: EmulatorState,
    path: Path,
    *,
    calling_ae: str = "",
    overrides: ReceiveOptions | None = None,
) -> PrearcKey:
    """Put one received DICOM file into the prearchive (C-STORE and gradual-DICOM entry point).

    The file is routed with XNAT's rules (unknown project → ``Unassigned``), added to the
    RECEIVING session of its study in that project (created when needed) and moved (not
    copied) into ``prearchive/P/TS/F/SCANS/{scan}/DICOM/``. The same SOP Instance UID twice
    replaces the earlier file. Safe to call from many threads at once.

    Args:
        state: Emulator state.
        path: The received file (a temp file; it is moved away).
        calling_ae: The sender's AE title (logged).
        overrides: Upload parameters (project, labels, flags).

    Returns:
        The session's key.

    Raises:
        NotDicomError: The file is not usable DICOM (it is left in place).

    Example:
        >>> key = store_received_file(state, Path("/tmp/x.dcm"))
        >>> key.uri
        '/data/prearchive/projects/P1/20240131_140509123/SESS1'
    """
    header = read_header(path)
    if header is None:
        raise NotDicomError(
            f"{path.name} is not a readable DICOM file (no Study/SOP Instance UID or "
            "truncated); send Part-10 DICOM files"
        )
    options = overrides or ReceiveOptions(login=state.config.admin_user, calling_ae=calling_ae)
    if calling_ae and not options.calling_ae:
        options = dataclasses.replace(options, calling_ae=calling_ae)
    return receive_file(state, path, header, options=options)


def receive_file(
    state: EmulatorState,
    path: Path,
    header: DicomHeader,
    *,
    options: ReceiveOptions,
    digest: str | None = None,
) -> PrearcKey:
    """Store a file whose header is already read (see :func:`store_received_file`).

    Args:
        state: Emulator state.
        path: The file (moved away).
        header: Its header.
        options: Routing overrides and flags.
        digest: Its MD5 when already known.

    Returns:
        The session's key.

    Raises:
        PrearcLockedError: The fixed ``slot`` session is busy.
    """
    routing = route(header, known_projects=state.resolve_project)
    project = options.project or routing.project or UNASSIGNED
    aa = options.auto_archive if options.auto_archive is not None else routing.auto_archive
    direct = options.direct_archive and project != UNASSIGNED
    digest = digest or md5_file(path)
    scan_id = scan_id_for(header)
    relpath = f"SCANS/{clean_label(scan_id)}/DICOM/{file_name(header)}"
    store = state.store
    with store.tx():
        row = _find_or_create(
            state, header, project, routing.subject, routing.session, aa, options, direct=direct
        )
        folder = session_dir(state, row)
        scripts = scripts_for(state, project, prevent_anon=_truthy(options.prevent_anon))
        if scripts:
            variables = {
                "project": project,
                "subject": str(row["subject"]),
                "session": str(row["name"]),
                "modality": header.modality,
            }
            for note in anonymize(path, scripts, variables):
                add_log(state, row["id"], note)
            digest = md5_file(path)
        old = store.one(
            "SELECT name FROM prearc_files WHERE session_id=? AND sop_uid=?",
            (row["id"], header.sop_instance_uid),
        )
        move_file(path, folder / relpath)
        if old is not None and old["name"] != relpath:
            (folder / old["name"]).unlink(missing_ok=True)
        store.execute(
            "INSERT INTO prearc_files(session_id, sop_uid, scan_id, series_uid, "
            "series_description, modality, sop_class_uid, name, size, digest) "
            "VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(session_id, sop_uid) DO UPDATE SET "
            "scan_id=excluded.scan_id, series_uid=excluded.series_uid, "
            "series_description=excluded.series_description, modality=excluded.modality, "
            "sop_class_uid=excluded.sop_class_uid, name=excluded.name, size=excluded.size, "
            "digest=excluded.digest",
            (
                row["id"],
                header.sop_instance_uid,
                scan_id,
                header.series_instance_uid,
                header.series_description,
                header.modality,
                header.sop_class_uid,
                relpath,
                (folder / relpath).stat().st_size,
                digest,
            ),
        )
        store.execute(
            "UPDATE prearc_sessions SET status='RECEIVING', last_received=?, lastmod=?, "
            "archive_after=NULL WHERE id=?",
            (time.time(), now_text(), row["id"]),
        )
        return key_of(row)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _find_or_create(
    state: EmulatorState,
    header: DicomHeader,
    project: str,
    routed_subject: str | None,
    routed_session: str | None,
    aa: bool | None,
    options: ReceiveOptions,
    *,
    direct: bool,
) -> Row:
    store = state.store
    root = DIRECT if direct else PREARCHIVE
    if options.slot is not None:
        timestamp, folder = options.slot
        row = store.one(
            "SELECT * FROM prearc_sessions WHERE project=? AND timestamp=? AND folder=?",
            (project, timestamp, folder),
        )
        if row is not None and row["status"] in LOCKED_STATUSES:
            raise PrearcLockedError(f"prearchive session {timestamp}/{folder} is {row['status']}")
    else:
        row = store.one(
            "SELECT * FROM prearc_sessions WHERE project=? AND tag=? AND root=? AND status IN "
            f"({','.join('?' * len(OPEN_STATUSES))}) ORDER BY id DESC LIMIT 1",
            (project, header.study_instance_uid, root, *OPEN_STATUSES),
        )
    if row is not None:
        changes: dict[str, object] = {}
        if options.overwrite is not None:
            changes["overwrite"] = options.overwrite
        if options.auto_archive is not None:
            changes["aa"] = int(options.auto_archive)
        if changes:
            sets = ", ".join(f"{k}=?" for k in changes)
            store.execute(
                f"UPDATE prearc_sessions SET {sets} WHERE id=?", (*changes.values(), row["id"])
            )
        return row
    label = clean_label(options.session or routed_session or DEFAULT_SESSION_LABEL)
    subject = clean_label(options.subject or routed_subject or "")
    for kind, value in (("session", label), ("subject", subject)):
        if len(value.encode("utf-8")) > MAX_LABEL_BYTES:
            raise LabelTooLongError(
                f"{kind} label of {len(value)} characters is longer than {MAX_LABEL_BYTES}"
            )
    when = datetime.now()
    if options.slot is not None:
        timestamp, folder = options.slot
    else:
        folder = label
        timestamp = _timestamp(when)
        while store.one(
            "SELECT 1 FROM prearc_sessions WHERE project=? AND timestamp=? AND folder=?",
            (project, timestamp, folder),
        ):
            when += timedelta(milliseconds=1)
            timestamp = _timestamp(when)
    now = now_text()
    session_type = xsi_types_for_modality(header.modality)[0]
    session_id = store.execute(
        "INSERT INTO prearc_sessions(project, timestamp, folder, name, subject, tag, status, "
        "root, uploaded, lastmod, last_received, scan_date, scan_time, modality, xsi_type, "
        "patient_id, patient_name, accession, autoarchive, aa, overwrite, prevent_anon, "
        "prevent_auto_commit, source, visit, protocol, timezone, login) "
        "VALUES(?,?,?,?,?,?,'RECEIVING',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            project,
            timestamp,
            folder,
            label,
            subject,
            header.study_instance_uid,
            root,
            now,
            now,
            time.time(),
            dicom_date(header.study_date),
            dicom_time(header.study_time),
            header.modality,
            session_type,
            header.patient_id,
            header.patient_name,
            header.accession_number,
            autoarchive_text(state, project, aa),
            None if aa is None else int(aa),
            options.overwrite or "none",
            options.prevent_anon,
            options.prevent_auto_commit,
            options.source,
            options.visit,
            options.protocol,
            options.timezone,
            options.login or state.config.admin_user,
        ),
    )
    where = f" from AE {options.calling_ae}" if options.calling_ae else ""
    by = options.login or state.config.admin_user
    add_log(
        state, session_id, f"Session created by {by}{where} for study {header.study_instance_uid}"
    )
    return load(state, session_id)
