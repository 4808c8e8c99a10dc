"""Prefect blocks of xnat-prefect (installed as ``xnat_prefect.blocks``).

Registered through the ``prefect.collections`` entry point, so
``prefect block register -m xnat_prefect.blocks`` and Prefect's auto-registration both find
them.
"""

from __future__ import annotations

from xnat_prefect.blocks.credentials import XNATCredentials
from xnat_prefect.blocks.dicom_node import DicomNode

__all__ = ["DicomNode", "XNATCredentials"]
