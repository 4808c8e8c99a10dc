"""Result summaries of batch operations: ``BatchSummary``, ``RenameSummary``, ``MergeSummary``.

Summary models reject unknown fields (a typo in a service must fail loudly) and support the
mapping access of :class:`XNATModel`, so the seed's "summary dict with deleted, failed,
errors" reads as ``summary["deleted"]``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ConfigDict, Field

from xnat_prefect.models._base import XNATModel

__all__ = ["BatchSummary", "MergeSummary", "RenameSummary", "SummaryModel"]


class SummaryModel(XNATModel):
    """Base of result summaries: strict fields (no extras)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class BatchSummary(SummaryModel):
    """Outcome of an operation over many items.

    Used for deleting scans, refreshing catalogs, adding a user to groups...

    ``summary["deleted"]``, ``["refreshed"]``, ``["added"]``, ``["removed"]`` all read
    :attr:`succeeded`, matching the seed's wording for each operation.

    Attributes:
        operation: What was done (``delete``, ``refresh``...).
        total: Items attempted.
        succeeded: Ids that succeeded.
        failed: Id -> reason for each failure.
        errors: Human-readable error lines (``"id: reason"``).
        dry_run: Nothing was changed.
    """

    operation: str = ""
    total: int = 0
    succeeded: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)
    dry_run: bool = False

    _mapping_aliases: ClassVar[dict[str, str]] = {
        "deleted": "succeeded",
        "refreshed": "succeeded",
        "added": "succeeded",
        "removed": "succeeded",
        "success": "success",
    }

    @property
    def success(self) -> bool:
        """No item failed."""
        return not self.failed and not self.errors

    def record_failure(self, item: str, reason: str) -> None:
        """Add one failure (to :attr:`failed` and :attr:`errors`).

        Args:
            item: The item id.
            reason: Why it failed (no secrets).
        """
        self.failed[item] = reason
        self.errors.append(f"{item}: {reason}")


class RenameSummary(SummaryModel):
    """Outcome of batch subject renames.

    Attributes:
        renamed: Old label -> new label.
        merged: Source label -> target label (merged into an existing subject).
        skipped: Label -> reason (no match, same name, target exists without ``merge``).
        errors: Label -> error.
        dry_run: Nothing was changed.
    """

    renamed: dict[str, str] = Field(default_factory=dict)
    merged: dict[str, str] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    dry_run: bool = False

    _mapping_aliases: ClassVar[dict[str, str]] = {"success": "success"}

    @property
    def success(self) -> bool:
        """No errors."""
        return not self.errors


class MergeSummary(SummaryModel):
    """Outcome of merging one subject into another.

    Attributes:
        source: Source subject label.
        target: Target subject label.
        experiments_moved: Number of experiments moved.
        source_deleted: The emptied source subject was deleted.
        experiments: Ids of the moved experiments.
        dry_run: Nothing was changed.
    """

    source: str | None = None
    target: str | None = None
    experiments_moved: int = 0
    source_deleted: bool = False
    experiments: list[str] = Field(default_factory=list)
    dry_run: bool = False
