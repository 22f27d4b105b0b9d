"""clean's report and profile.json, added up partition by partition."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from steps.errors import CleanError


class Profile:
    """profile.json of the kept rows, added up partition by partition from each one's summary
    (``summary``, small enough to keep with the partition): per column its type, missing count,
    and min/max/mean for numbers (the mean as one sum over all partitions, added in order)."""

    def __init__(self) -> None:
        self.columns: dict[str, dict[str, Any]] = {}

    @staticmethod
    def summary(table: pa.Table) -> dict[str, dict[str, Any]]:
        out = {}
        for field in table.schema:
            col = table.column(field.name)
            info: dict[str, Any] = {"type": str(field.type), "missing": col.null_count}
            if pa.types.is_floating(field.type) or pa.types.is_integer(field.type):
                stats = pc.min_max(col)
                info |= {"min": stats["min"].as_py(), "max": stats["max"].as_py(), "sum": pc.sum(col).as_py(),
                         "count": len(col) - col.null_count}  # fmt: skip
            out[field.name] = info
        return out

    def add(self, summary: dict[str, dict[str, Any]]) -> None:
        for name, part in summary.items():
            info = self.columns.setdefault(name, {"type": part["type"], "missing": 0})
            info["missing"] += part["missing"]
            if "min" in part:
                if part["min"] is not None:
                    info["min"] = part["min"] if info.get("min") is None else min(info["min"], part["min"])
                    info["max"] = part["max"] if info.get("max") is None else max(info["max"], part["max"])
                    info["sum"] = info.get("sum", 0) + part["sum"]
                    info["count"] = info.get("count", 0) + part["count"]
                info.setdefault("min", None), info.setdefault("max", None)

    def result(self) -> dict[str, Any]:
        out = {}
        for name, info in self.columns.items():
            summary = {k: v for k, v in info.items() if k not in ("sum", "count")}
            if "min" in info:
                summary["mean"] = info["sum"] / info["count"] if info.get("count") else None
            out[name] = summary
        return out


class Tally:
    """The report of clean, added up partition by partition."""

    def __init__(self, dedupe: bool, repeats: int, rare: dict | None = None) -> None:
        self.rows_in = self.rows_kept = 0
        self.by_reason: dict[str, int] = {}
        self.dedupe, self.repeats, self.rare = dedupe, repeats, rare or {}

    def add(self, kept: int, quarantined: dict[str, int]) -> None:
        self.rows_in += kept + sum(quarantined.values())
        self.rows_kept += kept
        for kind, count in quarantined.items():
            self.by_reason[kind] = self.by_reason.get(kind, 0) + count

    def report(self) -> dict[str, Any]:
        if self.rows_in == 0:
            raise CleanError("clean: no rows were ingested; expected at least one")
        report = {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_in - self.rows_kept,
            "quarantined_by_reason": dict(sorted(self.by_reason.items())),
        }
        if not self.dedupe:
            report["duplicate_rows_kept"] = self.repeats  # clean.dedupe: true quarantines them
        if self.rare:  # only then: the report of data with no rare class stays as it was
            report["rare_classes"] = {str(label): n for label, n in self.rare.items()}
        return report
