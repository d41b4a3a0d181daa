"""Drift of a batch prediction job's rows against the model's reference profile (``ml/profile.py``).

Rows are counted into the reference's own bins batch by batch (``DriftCounter.add``); a sharded job's
shards each count their rows and hand over their counts as JSON (``partial``), which the job merges
(``merge``): the report is computed once over the whole job from the summed histograms, never per shard.

Per feature, the report gives:

- ``psi``: the population stability index over the reference bins (numeric: the reference's decile
  bins; categorical: its listed categories plus "other"), each share floored at ``EPSILON`` so an empty
  bin does not make it infinite. Missing values are not a bin; their change is ``missing_rate``.
- ``test``: numeric columns a two-sample Kolmogorov–Smirnov test computed from the binned counts (the
  largest gap between the two cumulative distributions at the reference's bin edges, with scipy's
  asymptotic Kolmogorov distribution for the p-value; binning can only hide a gap, so the statistic is
  a lower bound of the exact one); categorical columns a chi-squared test of homogeneity
  (``scipy.stats.chi2_contingency``) of the reference and current counts.
- ``unseen``: how many current values of a categorical column never appeared in training (with up to
  ``MAX_EXAMPLES`` examples); only when the profile lists every training value (``complete``).

The model's predictions get the same PSI (``prediction``). ``detected`` is true when any feature's PSI
passes the threshold (``KUBEPREDICT_DRIFT_PSI_THRESHOLD``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kubepredict.ml.jsonsafe import json_safe
from kubepredict.ml.preprocess import NUMERIC, coerce_frame
from kubepredict.ml.profile import bin_counts

EPSILON = 1e-4
MAX_EXAMPLES = 10


def psi(reference: list[int] | np.ndarray, current: list[int] | np.ndarray) -> float | None:
    """Population stability index of two count vectors over the same bins (None when either is empty)."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return None
    p = np.maximum(ref / ref.sum(), EPSILON)
    q = np.maximum(cur / cur.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_binned(reference: list[int], current: list[int]) -> dict[str, Any] | None:
    """Two-sample KS statistic and asymptotic p-value from counts over the same ordered bins."""
    from scipy.stats import kstwobign

    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        return None
    d = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    en = np.sqrt(n * m / (n + m))
    return {"name": "ks", "statistic": round(d, 6), "p_value": round(float(kstwobign.sf(d * en)), 6)}


def chi_squared(reference: list[int], current: list[int]) -> dict[str, Any] | None:
    """Chi-squared test of homogeneity of two count vectors (bins empty in both dropped)."""
    from scipy.stats import chi2_contingency

    table = np.array([reference, current], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) <= 0).any():
        return {"name": "chi2", "statistic": 0.0, "p_value": 1.0} if table.size else None
    stat, p, _dof, _exp = chi2_contingency(table, correction=False)
    return {"name": "chi2", "statistic": round(float(stat), 6), "p_value": round(float(p), 6)}


def _ref_counts(ref: dict) -> list[int]:
    return list(ref["counts"]) + ([ref.get("other", 0)] if ref["kind"] != NUMERIC else [])


class DriftCounter:
    """Current counts in the reference's bins, per feature and for the predictions; JSON-mergeable."""

    def __init__(self, reference: dict):
        self.reference = reference
        self.rows = 0
        self.features: dict[str, dict[str, Any]] = {}
        for name, ref in reference["features"].items():
            self.features[name] = self._empty(ref)
        pred_ref = reference.get("prediction")
        self.prediction = self._empty(pred_ref) if pred_ref else None

    @staticmethod
    def _empty(ref: dict) -> dict[str, Any]:
        return {"counts": [0] * len(_ref_counts(ref)), "missing": 0, "unseen": 0, "examples": []}

    @staticmethod
    def _count(state: dict, ref: dict, values) -> None:
        if ref["kind"] == NUMERIC:
            counts, missing = bin_counts(np.asarray(values, dtype=float), ref["edges"])
        else:
            counts, missing = DriftCounter._count_categories(state, ref, values)
        state["counts"] = [a + b for a, b in zip(state["counts"], counts, strict=True)]
        state["missing"] += int(missing)

    @staticmethod
    def _count_categories(state: dict, ref: dict, values) -> tuple[list[int], int]:
        """Counts per listed category + "other", by hashing (each distinct value is turned into text once,
        as ``coerce_frame`` turns every value: ``str``)."""
        codes, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        per_unique = np.bincount(codes[codes >= 0], minlength=len(uniques))
        index = {c: i for i, c in enumerate(ref["categories"])}
        counts = [0] * (len(index) + 1)
        for value, n in zip(uniques, per_unique.tolist(), strict=True):
            text = str(value)
            slot = index.get(text)
            counts[len(index) if slot is None else slot] += n
            if slot is None and ref.get("complete") and n:
                state["unseen"] += n
                if len(state["examples"]) < MAX_EXAMPLES and text not in state["examples"]:
                    state["examples"].append(text)
        return counts, int((codes < 0).sum())

    def add(self, frame: pd.DataFrame, predictions) -> None:
        """Count one scored batch: its feature columns and the model's predictions for them."""
        refs = self.reference["features"]
        numeric = coerce_frame(frame, {n: NUMERIC for n, ref in refs.items() if ref["kind"] == NUMERIC})
        columns = {name: (numeric[name] if name in numeric else frame[name]).to_numpy() for name in self.features}
        self.add_columns(columns, len(frame), predictions)

    def add_columns(self, columns: Mapping[str, np.ndarray], n_rows: int, predictions) -> None:
        """``add`` for a batch already as one array per feature (numbers as float64 with NaN for missing)."""
        refs = self.reference["features"]
        self.rows += n_rows
        for name, state in self.features.items():
            self._count(state, refs[name], columns[name])
        if self.prediction is not None:
            self._count(self.prediction, self.reference["prediction"], np.asarray(predictions))

    def partial(self) -> dict[str, Any]:
        return {"rows": self.rows, "features": self.features, "prediction": self.prediction}

    def merge(self, partial: dict[str, Any]) -> None:
        self.rows += int(partial["rows"])
        pairs = [(self.features[n], s) for n, s in partial["features"].items()]
        if self.prediction is not None:
            pairs.append((self.prediction, partial["prediction"]))
        for mine, theirs in pairs:
            mine["counts"] = [a + b for a, b in zip(mine["counts"], theirs["counts"], strict=True)]
            mine["missing"] += theirs["missing"]
            mine["unseen"] += theirs["unseen"]
            for value in theirs["examples"]:
                if len(mine["examples"]) < MAX_EXAMPLES and value not in mine["examples"]:
                    mine["examples"].append(value)

    def report(self, threshold: float) -> dict[str, Any]:
        """The job's ``summary.drift``: features sorted worst PSI first."""
        features = [self._feature(name, ref, self.features[name]) for name, ref in self.reference["features"].items()]
        features.sort(key=lambda f: -(f["psi"] if f["psi"] is not None else -1.0))
        pred_ref = self.reference.get("prediction")
        prediction = None
        if pred_ref and self.prediction is not None:
            prediction = {
                "kind": pred_ref["kind"],
                "psi": _round(psi(_ref_counts(pred_ref), self.prediction["counts"])),
                "histogram": _histogram(pred_ref, self.prediction),
            }
        worst = features[0] if features else None
        return {
            "available": True,
            "rows": self.rows,
            "reference_rows": self.reference.get("rows"),
            "threshold": threshold,
            "detected": any(f["psi"] is not None and f["psi"] > threshold for f in features),
            "max_psi": worst["psi"] if worst else None,
            "worst_feature": worst["feature"] if worst else None,
            "features": features,
            "prediction": prediction,
        }

    def _feature(self, name: str, ref: dict, cur: dict) -> dict[str, Any]:
        ref_counts = _ref_counts(ref)
        ref_rate = ref["missing"] / ref["n"] if ref["n"] else 0.0
        cur_total = sum(cur["counts"]) + cur["missing"]
        cur_rate = cur["missing"] / cur_total if cur_total else 0.0
        out: dict[str, Any] = {
            "feature": name,
            "kind": ref["kind"],
            "psi": _round(psi(ref_counts, cur["counts"])),
            "test": ks_binned(ref_counts, cur["counts"])
            if ref["kind"] == NUMERIC
            else chi_squared(ref_counts, cur["counts"]),
            "missing_rate": {
                "reference": round(ref_rate, 6),
                "current": round(cur_rate, 6),
                "change": round(cur_rate - ref_rate, 6),
            },
            "histogram": _histogram(ref, cur),
        }
        if ref["kind"] != NUMERIC:
            out["unseen"] = (
                {"count": cur["unseen"], "examples": json_safe(cur["examples"])} if ref.get("complete") else None
            )
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _histogram(ref: dict, cur: dict) -> dict[str, Any]:
    """Reference and current counts per bin, with the bins' labels, for the page's chart."""
    if ref["kind"] == NUMERIC:
        edges = ref["edges"]
        labels = [f"≤ {_num(edges[0])}"] if edges else ["all"]
        labels += [f"{_num(a)} – {_num(b)}" for a, b in zip(edges, edges[1:], strict=False)]
        if edges:
            labels.append(f"> {_num(edges[-1])}")
    else:
        labels = list(ref["categories"]) + ["other"]
    return {"bins": labels, "reference": _ref_counts(ref), "current": list(cur["counts"])}


def _num(x: float) -> str:
    return f"{x:.4g}"


def absent(reason: str, code: str) -> dict[str, Any]:
    """``summary.drift`` of a job whose model has no profile (trained before profiles existed)."""
    return {"available": False, "code": code, "reason": reason}
