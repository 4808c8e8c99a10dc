"""The DICOM node block: a C-STORE destination (XNAT's DICOM receiver or any SCP)."""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from pydantic import Field, field_validator

_AE_TITLE = re.compile(r"^[ -~]{1,16}$")


class DicomNode(Block):
    """A DICOM network node that accepts C-STORE, such as XNAT's DICOM receiver.

    Attributes:
        host: Host name or address of the receiver.
        port: TCP port of the receiver (XNAT's default receiver listens on 8104).
        called_ae_title: AE title of the receiver (XNAT's default is ``XNAT``).
        calling_ae_title: Our AE title, as the receiver sees it.
        max_associations: Parallel associations used to send.
        timeout_seconds: Network timeout of an association.

    Example:
        Send a folder of DICOM files by C-STORE:
        ```python
        from xnat_prefect.blocks import DicomNode

        node = DicomNode.load("BLOCK_NAME")
        print(node.host, node.port, node.called_ae_title)
        ```
    """

    _block_type_name = "DICOM Node"
    _block_type_slug = "dicom-node"
    _logo_url = "https://www.xnat.org/images/xnat-logo.png"  # type: ignore[assignment]
    _documentation_url = "https://github.com/xnat-prefect/xnat-prefect#readme"  # type: ignore[assignment]
    _description = "A DICOM C-STORE destination such as XNAT's DICOM receiver."

    host: str = Field(default=..., description="Host name or address of the DICOM receiver.")
    port: int = Field(default=8104, ge=1, le=65535, description="TCP port of the receiver.")
    called_ae_title: str = Field(default="XNAT", description="AE title of the receiver.")
    calling_ae_title: str = Field(
        default="XNATPREFECT", description="Our AE title, as the receiver sees it."
    )
    max_associations: int = Field(
        default=4, ge=1, le=64, description="Parallel associations used to send."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Network timeout of an association, in seconds."
    )

    @field_validator("called_ae_title", "calling_ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        if not _AE_TITLE.match(value) or value.strip() == "" or "\\" in value:
            raise ValueError(
                f"AE titles are 1-16 printable ASCII characters without backslash, got {value!r}"
            )
        return value.strip()
