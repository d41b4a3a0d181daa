"""Column typing, coercion and the preprocessing half of every pipeline."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kubepredict.errors import InvalidInput

logger = logging.getLogger(__name__)

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Rarer categories are folded into one "infrequent" column so an id-like column cannot
# blow the dense one-hot matrix up to rows x distinct values.
MAX_CATEGORIES = 100


def column_kinds(frame: pd.DataFrame, features: list[str]) -> dict[str, str]:
    """Classify each feature as "numeric" or "categorical" (object, string, category, bool, dates)."""
    kinds = {}
    for name in features:
        col = frame[name]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        kinds[name] = NUMERIC if numeric else CATEGORICAL
    return kinds


class MedianImputer(SimpleImputer):
    """``SimpleImputer(strategy="median")`` whose fit takes each column's median by a partial sort
    (``numpy.nanmedian``) rather than a full sort of a masked copy: the same statistics, for 1M x 20
    about 10x faster and without the ~3 copies of the data the masked sort makes.

    Once fitted it *is* a ``SimpleImputer`` (same fitted attributes, class switched back; ``plain_sklearn``
    does the same for the unfitted templates): stored models hold scikit-learn classes only, so skops,
    MLServer or a user's own code load them without Kubepredict.
    """

    def __init__(self, *, keep_empty_features: bool = True):
        super().__init__(strategy="median", keep_empty_features=keep_empty_features)

    def fit(self, X, y=None):
        super().fit(X, y)
        self.__class__ = SimpleImputer
        return self

    def _dense_fit(self, X, strategy, missing_values, fill_value):
        if strategy != "median":
            return super()._dense_fit(X, strategy, missing_values, fill_value)
        from sklearn.utils._mask import _get_mask

        missing = _get_mask(X, missing_values)
        self._fit_indicator(missing)
        values = np.where(missing, np.nan, X) if missing.any() else X
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": an empty column
            median = np.asarray(np.nanmedian(values, axis=0), dtype=np.float64)
        median[np.isnan(median)] = 0 if self.keep_empty_features else np.nan
        return median


def plain_sklearn(pipeline) -> None:
    """Turn the unfitted ``MedianImputer`` templates a fitted pipeline still holds as parameters (the
    ColumnTransformer keeps the ones it cloned) into ``SimpleImputer``: the stored model then names
    scikit-learn classes only."""
    for value in pipeline.get_params(deep=True).values():
        if isinstance(value, MedianImputer):
            value.__class__ = SimpleImputer


def build_preprocessor(kinds: dict[str, str]) -> ColumnTransformer:
    """Build the unfitted ColumnTransformer: impute+scale numerics, impute+one-hot categoricals."""
    numeric = [c for c, k in kinds.items() if k == NUMERIC]
    categorical = [c for c, k in kinds.items() if k == CATEGORICAL]
    transformers = []
    # keep_empty_features=True: an all-NaN column stays one (constant) output column instead of
    # vanishing, so the output layout always matches the input columns.
    if numeric:
        transformers.append(
            (
                "num",
                Pipeline(
                    [
                        ("impute", MedianImputer(keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                        (
                            "onehot",
                            OneHotEncoder(handle_unknown="ignore", max_categories=MAX_CATEGORIES, sparse_output=False),
                        ),
                    ]
                ),
                categorical,
            )
        )
    # sparse_threshold=0: several estimators (HistGradientBoosting, GaussianNB) need dense input.
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _is_blank(values: pd.Series) -> pd.Series:
    return values.map(lambda v: isinstance(v, str) and not v.strip())


def coerce_frame(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Return ``frame``'s feature columns with numerics as floats and categoricals as str (NaN kept)."""
    out = {}
    for name, kind in kinds.items():
        col = frame[name]
        if kind == NUMERIC:
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                out[name] = col.astype("float64")
                continue
            obj = col.astype(object)
            obj = obj.mask(_is_blank(obj) | obj.isna(), np.nan)
            converted = pd.to_numeric(obj, errors="coerce")
            bad = converted.isna() & obj.notna()
            if bad.any():
                examples = [str(v) for v in obj[bad].unique()[:3]]
                raise InvalidInput(
                    f"column {name!r} should be numeric but holds {', '.join(map(repr, examples))}",
                    code="invalid_values",
                    details={"column": name, "examples": examples},
                )
            out[name] = converted.astype("float64")
        else:
            obj = col.astype(object)
            missing = obj.isna()
            out[name] = obj.map(str).mask(missing, np.nan).astype(object)
    return pd.DataFrame(out, index=frame.index)


def output_columns(preprocessor: ColumnTransformer) -> list[str]:
    """Map each output column of a fitted preprocessor back to its original input column."""
    owners: list[str] = []
    for name, transformer, columns in preprocessor.transformers_:
        if name == "num":
            owners.extend(columns)
        elif name == "cat":
            enc = transformer.named_steps["onehot"]
            infrequent = getattr(enc, "infrequent_categories_", None) or [None] * len(columns)
            for col, cats, rare in zip(columns, enc.categories_, infrequent, strict=True):
                n_rare = 0 if rare is None else len(rare)
                owners.extend([col] * (len(cats) - n_rare + (1 if n_rare else 0)))
    return owners
