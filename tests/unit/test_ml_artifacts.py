"""Artifacts: skops round trip, SHA-256 before parsing, our own allow-list of types."""

import os

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn.cluster import Birch

from kubepredict.errors import ArtifactRejected, Unprocessable
from kubepredict.ml import dump_model, load_model, sha256_hex, train
from kubepredict.ml.artifacts import is_allowed_type


class Sneaky(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


@pytest.fixture(scope="module")
def trained():
    frame = load_iris(as_frame=True).frame
    return frame, train(frame, target="target", features=None, task=None,
                        algorithm="hist_gradient_boosting", params={"max_iter": 20})


def test_round_trip_predicts_the_same(trained):
    frame, result = trained
    data = dump_model(result.pipeline)
    assert isinstance(data, bytes) and data[:2] == b"PK"  # a skops zip, not a pickle
    loaded = load_model(data, sha256_hex(data))
    X = frame[result.features]
    np.testing.assert_array_equal(loaded.predict(X), result.pipeline.predict(X))


def test_flipped_byte_is_tampered(trained):
    data = bytearray(dump_model(trained[1].pipeline))
    digest = sha256_hex(bytes(data))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ArtifactRejected) as err:
        load_model(bytes(data), digest)
    assert err.value.code == "artifact_tampered"


def test_garbage_with_matching_hash_is_corrupt():
    data = b"not a skops file"
    with pytest.raises(ArtifactRejected) as err:
        load_model(data, sha256_hex(data))
    assert err.value.code == "artifact_corrupt"


@pytest.mark.parametrize("model,expected", [
    (Pipeline([("f", FunctionTransformer(func=os.system)), ("m", LogisticRegression())]), "system"),
    (Pipeline([("s", Sneaky()), ("m", LogisticRegression())]), "Sneaky"),
])
def test_untrusted_type_rejected_even_with_correct_hash(model, expected):
    data = sio.dumps(model)
    with pytest.raises(ArtifactRejected) as err:
        load_model(data, sha256_hex(data))
    assert err.value.code == "untrusted_type"
    assert any(expected in t for t in err.value.details["types"])


def test_allow_policy():
    for ok in ("numpy.dtype", "sklearn.tree._tree.Tree", "scipy.sparse._csr.csr_matrix",
               "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"):
        assert is_allowed_type(ok), ok
    for bad in ("posix.system", "builtins.eval", "numpy.load", "sklearn.utils._testing.assert_run_python_script_without_output",
                "sklearn.base.__builtins__", "scipy.io.loadmat", "numpy.f2py.compile", "__main__.Sneaky",
                "sklearn.utils.estimator_html_repr", "sklearnx.Thing"):
        assert not is_allowed_type(bad), bad


def test_unpersistable_model_is_refused_at_dump():
    with pytest.raises(Unprocessable) as err:
        dump_model(Birch())
    assert err.value.code == "unsupported_algorithm"


def test_stored_models_name_only_library_classes(trained):
    """Our fast median imputer never reaches the artifact: skops, MLServer or a user load it without us."""
    import skops.io as sio

    types = sio.get_untrusted_types(data=dump_model(trained[1].pipeline))
    assert not [t for t in types if t.startswith("kubepredict")], types
