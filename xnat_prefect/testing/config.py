"""Static configuration of one emulator: timings, behaviour options, users, site defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SITE_CONFIG_DEFAULTS", "EmulatorConfig", "EmulatorOptions", "Timing", "User"]

SITE_CONFIG_DEFAULTS: dict[str, Any] = {
    "siteId": "XNAT",
    "siteUrl": "",
    "initialized": True,
    "requireLogin": True,
    "sessionTimeout": "15 minutes",
    "aliasTokenTimeout": "2 days",
    "sessionXmlRebuilderInterval": 5,
    "sessionXmlRebuilderRepeat": 60000,
    "sessionArchiveTimeoutInterval": 600,
    "defaultProjectAutoArchiveSetting": 4,
    "projectAllowAutoArchive": True,
    "enableDicomReceiver": True,
    "checksums": True,
    "uiAllowNonAdminProjectCreation": True,
    "restrictUserListAccessToAdmins": True,
    "preventCrossModalityMerge": True,
    "concurrentMaxSessions": 1000,
    "maxFailedLogins": 20,
    "maxFailedLoginsLockoutDuration": "1 hour",
    "securityAllowNonPrivateProjects": True,
    "uiDefaultCompressedUploaderImporter": "DICOM-zip",
    "adminEmail": "admin@localhost",
    "siteDescriptionType": "Text",
}


@dataclass
class Timing:
    """How fast the emulator's asynchronous work advances (tests set these).

    Attributes:
        rebuild_quiet_seconds: Quiet time after the last received file before a RECEIVING
            prearchive session is built (XNAT: ``sessionXmlRebuilderInterval`` minutes).
        archive_delay_seconds: Extra delay before a READY auto-archive session is archived.
        sweep_interval_seconds: How often the background sweeper runs.
        session_timeout_seconds: Idle lifetime of an HTTP session (None: the site config's
            ``sessionTimeout``, 15 minutes by default).
        job_run_seconds: How long a pipeline or container run stays Running.
        job_polls: When set, a run finishes after this many status polls instead of a time.
    """

    rebuild_quiet_seconds: float = 2.0
    archive_delay_seconds: float = 0.0
    sweep_interval_seconds: float = 0.1
    session_timeout_seconds: float | None = None
    job_run_seconds: float = 1.0
    job_polls: int | None = None

    def update(self, **values: Any) -> None:
        """Change some timings.

        Args:
            **values: Field names and new values.

        Raises:
            ValueError: For an unknown field name.
        """
        for key, value in values.items():
            if not hasattr(self, key):
                raise ValueError(f"unknown timing {key!r}; known: {sorted(vars(self))}")
            setattr(self, key, value)


@dataclass
class EmulatorOptions:
    """Switches for behaviour that real XNAT does not have but some tests want (off by default).

    Attributes:
        honor_range: Answer ``Range`` requests for single files with ``206 Partial Content``.
            XNAT does not implement HTTP Range: by default the emulator ignores the header and
            sends the whole file with 200, as XNAT does. Tests of a client's resume logic
            against a Range-capable server (a proxy in front of XNAT, another server) turn this on.
    """

    honor_range: bool = False

    def update(self, **values: Any) -> None:
        """Change some options.

        Args:
            **values: Field names and new values.

        Raises:
            ValueError: For an unknown name or a value of the wrong type.
        """
        for key, value in values.items():
            if key not in type(self).__dataclass_fields__:
                raise ValueError(f"unknown emulator option {key!r}; known: {sorted(vars(self))}")
            if not isinstance(value, bool):
                raise ValueError(f"emulator option {key!r} takes true or false, got {value!r}")
        for key, value in values.items():
            setattr(self, key, value)


@dataclass(frozen=True)
class User:
    """A site user as the handlers see it."""

    login: str
    xdat_user_id: int
    is_admin: bool
    firstname: str = ""
    lastname: str = ""
    email: str = ""


@dataclass
class EmulatorConfig:
    """Static settings of one emulator instance."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    dicom_port: int = 0
    dicom_ae_title: str = "XNAT"
    enable_dicom: bool = True
    admin_user: str = "admin"
    admin_password: str = "admin"
    site_id: str = "XNAT"
    version: str = "1.9.2.1"
    seed: int = 0
    timing: Timing = field(default_factory=Timing)
    options: EmulatorOptions = field(default_factory=EmulatorOptions)
