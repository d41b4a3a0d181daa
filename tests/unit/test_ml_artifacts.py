"""Artifacts: skops round trip, SHA-256 before parsing, our own allow-list of types."""

import os
import sys

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import Birch
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from kubepredict.errors import ArtifactRejected, Unprocessable
from kubepredict.ml import artifact_types, dump_model, load_model, sha256_hex, train
from kubepredict.ml.algorithms import ALGORITHMS
from tests.unit.skops_craft import call, dct, function, node, swap, tup


class Sneaky(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


@pytest.fixture(scope="module")
def trained():
    frame = load_iris(as_frame=True).frame
    return frame, train(
        frame, target="target", features=None, task=None, algorithm="hist_gradient_boosting", params={"max_iter": 20}
    )


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


@pytest.mark.parametrize(
    "model,expected",
    [
        (Pipeline([("f", FunctionTransformer(func=os.system)), ("m", LogisticRegression())]), "system"),
        (Pipeline([("s", Sneaky()), ("m", LogisticRegression())]), "Sneaky"),
    ],
)
def test_untrusted_type_rejected_even_with_correct_hash(model, expected):
    data = sio.dumps(model)
    with pytest.raises(ArtifactRejected) as err:
        load_model(data, sha256_hex(data))
    assert err.value.code == "untrusted_type"
    assert any(expected in t for t in err.value.details["types"])


def test_allow_policy():
    for ok, loader in (
        ("numpy.dtype", "DTypeNode"),
        ("sklearn.tree._tree.Tree", "TreeNode"),
        ("numpy.ndarray", "NdArrayNode"),
        ("numpy.float64", "NdArrayNode"),
        ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "ObjectNode"),
        ("sklearn.ensemble._forest.ExtraTreesClassifier", "ObjectNode"),
    ):
        assert artifact_types.is_allowed(ok, loader), ok
    for bad in (
        "posix.system",
        "builtins.eval",
        "numpy.load",
        "numpy.memmap",
        "numpy._core.memmap.memmap",
        "sklearn.utils._testing.assert_run_python_script_without_output",
        "sklearn.base.__builtins__",
        "scipy.io.loadmat",
        "numpy.f2py.compile",
        "__main__.Sneaky",
        "sklearn.utils.estimator_html_repr",
        "sklearnx.Thing",
        "scipy.sparse._csr.csr_matrix",
        "sklearn.feature_extraction.text.CountVectorizer",
    ):
        assert not artifact_types.is_allowed(bad), bad
    # a type is allowed only in the form our artefacts hold it: a dtype is never called with arguments
    assert not artifact_types.is_allowed("numpy.dtype", "ConstructorFromReduceNode")
    assert not artifact_types.is_allowed("sklearn.tree._tree.Tree", "FunctionNode")


def test_allow_list_holds_only_library_classes_that_touch_nothing_outside():
    import importlib
    import inspect
    import io as _io
    import pathlib
    import socket

    risky = (np.memmap, _io.IOBase, pathlib.PurePath, socket.socket)
    table = artifact_types.allowed()
    for loader, paths in table.items():
        for path in paths:
            assert artifact_types.denied(path) is None, path
            if path.startswith("builtins."):
                continue
            module, _, name = path.rpartition(".")
            obj = getattr(importlib.import_module(module), name)
            assert obj.__module__.split(".")[0] in ("numpy", "sklearn"), path
            if inspect.isfunction(obj):
                assert path in artifact_types.FUNCTIONS and loader in ("FunctionNode", "CachedNode"), path
                continue
            assert inspect.isclass(obj) and not issubclass(obj, risky), path
    assert "numpy.memmap" not in table["CachedNode"]


# ---- every refused type, in the forms a crafted file can take -------------------------------------------
@pytest.fixture(scope="module")
def tree_model():
    frame = load_iris(as_frame=True).frame
    return dump_model(
        train(
            frame, target="target", features=None, task="classification", algorithm="decision_tree", params={}
        ).pipeline
    )


def _refused(data: bytes) -> ArtifactRejected:
    with pytest.raises(ArtifactRejected) as err:
        load_model(data, sha256_hex(data))
    assert err.value.code == "untrusted_type", err.value.message
    assert "Traceback" not in err.value.message
    return err.value


FILES, PROCESS, NETWORK, CODE, ATTRS = (
    artifact_types.FILES,
    artifact_types.PROCESS,
    artifact_types.NETWORK,
    artifact_types.CODE,
    artifact_types.ATTRS,
)
REFUSED = [  # (type named in the report, why, schema node a crafted file puts where classes_ was)
    ("numpy.memmap", FILES, lambda v: call("numpy.memmap", v, "uint8", "r")),
    ("numpy.memmap", FILES, lambda v: call("numpy.memmap", v, "uint8", "w+", 0, (4,))),
    ("numpy._core.memmap.memmap", FILES, lambda v: call("numpy._core.memmap.memmap", v, "uint8", "r")),
    ("numpy.memmap", FILES, lambda v: node("numpy.memmap", "ObjectNode")),
    ("numpy.lib.format.open_memmap", FILES, lambda v: call("numpy.lib.format.open_memmap", v, "w+")),
    ("numpy.load", FILES, lambda v: call("numpy.load", v)),
    ("numpy.fromfile", FILES, lambda v: call("numpy.fromfile", v, "uint8")),
    ("numpy.loadtxt", FILES, lambda v: call("numpy.loadtxt", v)),
    ("numpy.load", FILES, lambda v: function("numpy.load")),
    ("os.system", PROCESS, lambda v: call("os.system", f"touch {v}.pwned")),
    ("posix.system", PROCESS, lambda v: call("posix.system", f"touch {v}.pwned")),
    ("os.remove", FILES, lambda v: call("os.remove", v)),
    ("io.open", FILES, lambda v: call("io.open", v, "w")),
    ("_io.FileIO", FILES, lambda v: call("_io.FileIO", v, "w")),
    ("pathlib.Path", FILES, lambda v: call("pathlib.Path", v)),
    ("shutil.rmtree", FILES, lambda v: call("shutil.rmtree", v)),
    ("tempfile.NamedTemporaryFile", FILES, lambda v: call("tempfile.NamedTemporaryFile")),
    ("subprocess.Popen", PROCESS, lambda v: call("subprocess.Popen", ["touch", f"{v}.pwned"])),
    ("socket.socket", NETWORK, lambda v: call("socket.socket")),
    ("urllib.request.urlopen", NETWORK, lambda v: call("urllib.request.urlopen", "http://127.0.0.1:9/")),
    ("builtins.open", FILES, lambda v: call("builtins.open", v, "w")),
    ("builtins.eval", CODE, lambda v: call("builtins.eval", f"open({v!r}, 'w')")),
    ("builtins.exec", CODE, lambda v: call("builtins.exec", f"open({v!r}, 'w')")),
    ("builtins.getattr", ATTRS, lambda v: call("builtins.getattr", "x", "upper")),
    ("builtins.__import__", CODE, lambda v: call("builtins.__import__", "os")),
    ("builtins.compile", CODE, lambda v: call("builtins.compile", "1", "f", "eval")),
    (
        "functools.partial",
        ATTRS,
        lambda v: node(
            "functools.partial",
            "PartialNode",
            content=dct(func=function("os.system"), args=tup(f"touch {v}.pwned"), kwds=dct(), namespace=dct()),
        ),
    ),
    ("operator.attrgetter", ATTRS, lambda v: node("operator.attrgetter", "OperatorFuncNode", attrs=tup("real"))),
    ("joblib.memory.Memory", FILES, lambda v: node("joblib.memory.Memory", "ObjectNode", content=dct(location=str(v)))),
    ("joblib.load", FILES, lambda v: call("joblib.load", v)),
    ("pickle.loads", CODE, lambda v: call("pickle.loads", "x")),
    ("marshal.loads", CODE, lambda v: call("marshal.loads", "x")),
    ("ctypes.CDLL", CODE, lambda v: call("ctypes.CDLL", "libc.so.6")),
    ("importlib.import_module", CODE, lambda v: call("importlib.import_module", "os")),
    ("scipy.io.loadmat", FILES, lambda v: call("scipy.io.loadmat", v)),
    ("sklearn.datasets.fetch_openml", FILES, lambda v: call("sklearn.datasets.fetch_openml", "iris")),
    ("pandas.io.parsers.readers.read_csv", FILES, lambda v: call("pandas.io.parsers.readers.read_csv", v)),
]


@pytest.mark.parametrize("path,reason,state", REFUSED, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(REFUSED)])
def test_crafted_type_is_refused_before_anything_runs(tree_model, tmp_path, path, reason, state):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    err = _refused(swap(tree_model, "classes_", state(str(victim))))
    assert path in err.details["types"] and err.details["reasons"][path] == reason
    assert path in err.message and reason in err.message
    assert victim.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_memmap_cannot_read_a_file_into_the_model(tree_model, tmp_path):
    """The reported attack: classes_ = numpy.memmap(<any file>) put the file's bytes in every answer."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOP-SECRET")
    err = _refused(swap(tree_model, "classes_", call("numpy.memmap", str(secret), "uint8", "r")))
    assert err.details["types"] == ["numpy.memmap"]


@pytest.mark.parametrize(
    "state,path",
    [
        # skops trusts every scikit-learn estimator by default; this one reads the files its input names
        (
            node("sklearn.feature_extraction.text.CountVectorizer", "ObjectNode", content=dct(input="filename")),
            "sklearn.feature_extraction.text.CountVectorizer",
        ),
        # a scipy sparse matrix: harmless, but no model of ours holds one
        (
            node("scipy.sparse._csr.csr_matrix", "SparseMatrixNode", type="scipy", file="x.npz"),
            "scipy.sparse._csr.csr_matrix",
        ),
        # an allowed class in a form our artefacts never use: called with arguments from the file
        (call("sklearn.tree._tree.Tree", 4, tup(3), 1), "sklearn.tree._tree.Tree"),
        (call("numpy.dtype", "float64"), "numpy.dtype"),
        # a bound method of an allowed object
        (
            node(
                "sklearn.tree._classes.DecisionTreeClassifier",
                "MethodNode",
                content={"func": "fit", "obj": node("sklearn.tree._classes.DecisionTreeClassifier", "ObjectNode")},
            ),
            "sklearn.tree._classes.DecisionTreeClassifier",
        ),
    ],
)
def test_types_outside_our_models_are_refused_even_when_skops_trusts_them(tree_model, state, path):
    err = _refused(swap(tree_model, "classes_", state))
    assert path in err.details["types"]


def test_names_skops_reports_beyond_the_schema_are_refused(tree_model, monkeypatch):
    """Once the schema's node types pass, the names skops derives from their contents (a method's function,
    a bit generator) are checked against the allow-list too: an allowed schema is not enough."""
    import kubepredict.ml.artifacts as artifacts

    load_model(tree_model, sha256_hex(tree_model))  # the model alone loads
    reported = artifacts._reported
    extra = ["numpy.random._pcg64.PCG64", "builtins.eval"]
    monkeypatch.setattr(artifacts, "_reported", lambda tree: [*reported(tree), *extra])
    err = _refused(tree_model)
    assert err.details["reasons"] == {
        "numpy.random._pcg64.PCG64": "not a type our models hold",
        "builtins.eval": "runs or loads code",
    }


def test_deeply_nested_schema_is_a_clear_refusal(tree_model):
    deep = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}
    inner = deep
    for _ in range(5000):
        nxt = {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}
        inner["content"].append(nxt)
        inner = nxt
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)  # only to write the file
    try:
        data = swap(tree_model, "classes_", deep)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ArtifactRejected) as err:
        load_model(data, sha256_hex(data))
    assert err.value.code == "artifact_corrupt"


# ---- every algorithm we train still saves and loads ------------------------------------------------------
VARIANTS = {
    "knn": [{}, {"algorithm": "ball_tree", "metric": "manhattan"}, {"metric": "chebyshev"}],
    "mlp": [{"max_iter": 50}, {"solver": "sgd", "max_iter": 50}],
    "random_forest": [{"n_estimators": 5}],
    "hist_gradient_boosting": [{"max_iter": 5}],
    "gaussian_mixture": [{}, {"covariance_type": "diag"}],
}


def _frame():
    rng = np.random.default_rng(0)
    import pandas as pd

    n = 90
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n)})
    frame.loc[3, "a"] = np.nan
    frame.loc[4, "c"] = None
    frame["label"] = rng.choice(["red", "green", "blue"], n)
    frame["value"] = frame["a"].fillna(0) * 3 + rng.normal(size=n)
    return frame


CASES = [(s.name, s.task, p) for s in ALGORITHMS for p in VARIANTS.get(s.name, [{}])] + [
    ("sklearn.ensemble.ExtraTreesClassifier", "classification", {"n_estimators": 5}),
    ("sklearn.ensemble.GradientBoostingRegressor", "regression", {"n_estimators": 5}),
    ("sklearn.linear_model.SGDClassifier", "classification", {}),
    ("sklearn.gaussian_process.GaussianProcessClassifier", "classification", {}),
    ("sklearn.cluster.BisectingKMeans", "clustering", {"n_clusters": 3}),
    ("sklearn.compose.TransformedTargetRegressor", "regression", {}),
]


@pytest.mark.parametrize("algorithm,task,params", CASES, ids=[f"{a}-{t}-{i}" for i, (a, t, _) in enumerate(CASES)])
def test_every_algorithm_we_train_saves_and_loads(algorithm, task, params):
    frame = _frame()
    target = {"classification": "label", "regression": "value", "clustering": None}[task]
    frame = frame.drop(columns=[c for c in ("label", "value") if c != target])
    result = train(frame, target=target, features=None, task=task, algorithm=algorithm, params=params)
    data = dump_model(result.pipeline)
    nodes = artifact_types.schema_nodes(data)
    assert all(artifact_types.is_allowed(path, loader) for loader, path in nodes), [
        n for n in nodes if not artifact_types.is_allowed(n[1], n[0])
    ]
    loaded = load_model(data, sha256_hex(data))
    X = frame[result.features]
    np.testing.assert_array_equal(loaded.predict(X), result.pipeline.predict(X))


def test_a_model_we_would_not_load_is_refused_when_saved():
    from sklearn.feature_extraction.text import CountVectorizer

    model = Pipeline([("v", CountVectorizer()), ("m", LogisticRegression())])
    model.fit(["apple pear", "pear plum", "plum apple"], [0, 1, 0])
    with pytest.raises(Unprocessable) as err:
        dump_model(model)
    assert err.value.code == "unsupported_algorithm"
    assert "sklearn.feature_extraction.text.CountVectorizer" in err.value.details["types"]


def test_unpersistable_model_is_refused_at_dump():
    with pytest.raises(Unprocessable) as err:
        dump_model(Birch())
    assert err.value.code == "unsupported_algorithm"


def test_stored_models_name_only_library_classes(trained):
    """Our fast median imputer never reaches the artifact: skops, MLServer or a user load it without us."""
    import skops.io as sio

    types = sio.get_untrusted_types(data=dump_model(trained[1].pipeline))
    assert not [t for t in types if t.startswith("kubepredict")], types
