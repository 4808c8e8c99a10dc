"""Routes: imports (to be implemented)."""

from __future__ import annotations

from xnat_prefect.testing.http import Route

ROUTES: list[Route] = []


def store_received_file(state: object, path: object, *, calling_ae: str = "") -> None:
    """Placeholder: the DICOM receiver's hand-off into the prearchive (being implemented)."""
    raise NotImplementedError("DICOM receipt into the prearchive is not implemented yet")
