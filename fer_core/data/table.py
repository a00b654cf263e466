"""The face table both readers produce, and the rejects they report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FACE = 48  # faces are FACE x FACE uint8 grayscale everywhere in the data layer
META_COLUMNS = ["image", "source", "face_id", "label", "usage", "confidence"]


@dataclass
class FaceTable:
    """Faces as metadata rows plus an aligned (N, 48, 48) uint8 array."""

    meta: pd.DataFrame
    pixels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.meta) != len(self.pixels):
            raise ValueError(f"{len(self.meta)} metadata rows but {len(self.pixels)} faces")
        if self.pixels.dtype != np.uint8 or self.pixels.shape[1:] != (FACE, FACE):
            raise ValueError(f"faces must be uint8 {FACE}x{FACE}, got {self.pixels.dtype} {self.pixels.shape}")

    def __len__(self) -> int:
        return len(self.meta)

    @property
    def labels(self) -> np.ndarray:
        return self.meta["label"].to_numpy(dtype=np.int64)

    def take(self, index: np.ndarray | list[int]) -> FaceTable:
        index = np.asarray(index, dtype=np.int64)
        return FaceTable(self.meta.iloc[index].reset_index(drop=True), self.pixels[index])

    def where(self, mask: np.ndarray | pd.Series) -> FaceTable:
        return self.take(np.flatnonzero(np.asarray(mask)))

    @staticmethod
    def empty() -> FaceTable:
        return FaceTable(pd.DataFrame(columns=META_COLUMNS), np.zeros((0, FACE, FACE), np.uint8))

    @staticmethod
    def concat(tables: list[FaceTable]) -> FaceTable:
        tables = [t for t in tables if len(t)]
        if not tables:
            return FaceTable.empty()
        return FaceTable(pd.concat([t.meta for t in tables], ignore_index=True),
                         np.concatenate([t.pixels for t in tables]))


@dataclass
class Rejects:
    """Inputs that were skipped, each with a reason and enough context to find it again."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, source: str, where: str, reason: str, detail: str = "") -> None:
        self.rows.append({"source": source, "where": where, "reason": reason, "detail": detail[:200]})

    def extend(self, other: Rejects) -> None:
        self.rows.extend(other.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["reason"]] = out.get(row["reason"], 0) + 1
        return dict(sorted(out.items()))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["source", "where", "reason", "detail"])


class DataQualityError(ValueError):
    """A source gave no faces, or too many of its inputs were rejected: the build stops and says why."""


def check_quality(rejects: Rejects, accepted: int, max_ratio: float, what: str) -> None:
    """Stop a build on a source that yields nothing (a wrong path reads as an empty dataset otherwise) or
    rejects more than `max_ratio` of its inputs."""
    total = accepted + len(rejects)
    if total == 0:
        raise DataQualityError(f"{what}: no faces found")
    ratio = len(rejects) / total
    if ratio > max_ratio:
        reasons = ", ".join(f"{k}: {v}" for k, v in rejects.counts().items())
        raise DataQualityError(
            f"{what}: {len(rejects)} of {total} inputs rejected ({ratio:.1%} > allowed {max_ratio:.1%}); "
            f"reasons: {reasons}"
        )
