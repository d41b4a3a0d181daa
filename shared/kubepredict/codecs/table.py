"""The neutral form every wire format decodes to: named columns of equal length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

Column = Sequence[Any] | np.ndarray


@dataclass(frozen=True)
class Table:
    """Rows to score, column-major: one sequence (list or 1-D array) of ``n_rows`` values per column name.

    Codecs build it; scoring reads it. Column-major because the inference protocols send columns
    (one V2 tensor per feature) and the fast path scores columns, so nothing is transposed twice.
    """

    columns: Mapping[str, Column]
    n_rows: int

    @classmethod
    def from_rows(cls, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
        """Row-major values (``rows[i][j]`` is column ``names[j]``), e.g. ``dataframe_split``."""
        return cls({name: [row[j] for row in rows] for j, name in enumerate(names)}, len(rows))

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> Table:
        """One ``{column: value}`` object per row; a column absent from a row is missing (None) there."""
        names = dict.fromkeys(chain.from_iterable(records))
        return cls({name: [rec.get(name) for rec in records] for name in names}, len(records))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Table:
        return cls({str(c): frame[c].to_numpy() for c in frame.columns}, len(frame))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {name: list(values) if not hasattr(values, "dtype") else values for name, values in self.columns.items()},
            index=range(self.n_rows),
        )
