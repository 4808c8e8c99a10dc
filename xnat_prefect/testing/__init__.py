"""A high-fidelity XNAT 1.9 emulator: real HTTP and DICOM servers, SQLite + files, faults.

It never imports the client side of this package (``client``, ``models``, ``services``,
``dicom``): it encodes XNAT's wire format independently, so a parsing bug on one side cannot
cancel one on the other.

Example:
    ```python
    from xnat_prefect.testing import XNATEmulator

    with XNATEmulator() as xnat:
        ...  # talk to xnat.url with any XNAT client; send DICOM to xnat.dicom_port
    ```
"""

from __future__ import annotations

from xnat_prefect.testing.config import EmulatorOptions, Timing
from xnat_prefect.testing.faults import FaultRule
from xnat_prefect.testing.server import XNATEmulator

__all__ = ["EmulatorOptions", "FaultRule", "Timing", "XNATEmulator"]
