"""Which types a stored model may hold: the allow-list every skops artefact is checked against.

A skops file is a zip whose ``schema.json`` names, for every object, a loader (how skops rebuilds
it: ``ObjectNode``, ``NdArrayNode``, ``FunctionNode``…) and a type (``module.Class``). Loading a
name can import it and call it — ``numpy.memmap("/etc/passwd")`` opens a file, a
``FunctionTransformer`` runs its function on every prediction — so a name is only rebuilt when the
pair (loader, type) is one our own artefacts hold. Neither the file's own list nor skops' default
trust is taken on faith: skops trusts every scikit-learn estimator, and ``CountVectorizer(input=
"filename")`` reads files.

The pairs were found by fitting every algorithm of ``ml/algorithms.py`` (with its common parameter
variants) and every public scikit-learn classifier, regressor and clusterer a train request may
name, saving it, and reading the schema (tests/unit/test_ml_artifacts.py repeats this for the
catalogue, so a new algorithm or library version that needs a new type fails there first):

- containers and JSON scalars (``builtins.dict``, ``list``, ``tuple``, ``slice``, ``set``, ``str``);
- numpy arrays, numeric scalar types, ``numpy.dtype``, ``RandomState``/``Generator``;
- the predictors a train request may name (scikit-learn classifiers, regressors, clusterers), our
  preprocessing (``Pipeline``, ``ColumnTransformer``, ``SimpleImputer``, ``StandardScaler``,
  ``OneHotEncoder``), and the fitted helpers they keep (trees, binners, losses and links, distance
  metrics, KD/ball trees, optimizers, Gaussian-process kernels, label encoders) — listed by class,
  not by module prefix;
- two functions, the k-means steps ``BisectingKMeans`` keeps.

Everything else is refused, and a name that touches the file system, the network, processes or
code loading (``DENIED_MODULES``, ``DENIED_NAMES``) is refused with that reason whatever module it
is reached through, even if a later change to the allow-list would admit it.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from functools import cache

import numpy as np

FILES = "touches the file system"
PROCESS = "runs or controls processes"
NETWORK = "opens network connections"
CODE = "runs or loads code"
ATTRS = "reaches attributes or callables by name"

# Dotted module prefixes: ``os`` refuses ``os.system`` and ``os.path.join`` alike.
DENIED_MODULES: dict[str, str] = {
    **dict.fromkeys(
        (
            "os",
            "posix",
            "nt",
            "posixpath",
            "ntpath",
            "io",
            "_io",
            "pathlib",
            "shutil",
            "tempfile",
            "glob",
            "fileinput",
            "linecache",
            "mmap",
            "zipfile",
            "tarfile",
            "gzip",
            "bz2",
            "lzma",
            "shelve",
            "dbm",
            "sqlite3",
            "numpy.lib.npyio",
            "numpy.lib.format",
            "numpy.lib._npyio_impl",
            "numpy.lib._datasource",
            "scipy.io",
            "pandas.io",
            "sklearn.datasets",
        ),
        FILES,
    ),
    **dict.fromkeys(
        (
            "subprocess",
            "pty",
            "signal",
            "multiprocessing",
            "concurrent",
            "threading",
            "_thread",
            "asyncio",
            "sys",
            "numpy.testing",
            "sklearn.utils._testing",
        ),
        PROCESS,
    ),
    **dict.fromkeys(
        (
            "socket",
            "_socket",
            "ssl",
            "select",
            "selectors",
            "urllib",
            "urllib3",
            "http",
            "ftplib",
            "smtplib",
            "webbrowser",
            "requests",
            "httpx",
        ),
        NETWORK,
    ),
    **dict.fromkeys(
        (
            "pickle",
            "_pickle",
            "cPickle",
            "marshal",
            "dill",
            "cloudpickle",
            "joblib",
            "importlib",
            "runpy",
            "code",
            "codeop",
            "ctypes",
            "_ctypes",
            "numpy.ctypeslib",
            "numpy.f2py",
            "numpy.distutils",
            "sklearn.externals",
            "types",
            "gc",
        ),
        CODE,
    ),
    **dict.fromkeys(("functools", "operator", "inspect"), ATTRS),
}
# Last segment of a path, in any module: ``numpy.memmap`` and ``numpy._core.memmap.memmap`` alike.
DENIED_NAMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "memmap",
            "open_memmap",
            "load",
            "save",
            "savez",
            "savez_compressed",
            "savetxt",
            "loadtxt",
            "genfromtxt",
            "fromfile",
            "tofile",
            "fromregex",
            "DataSource",
            "open",
            "Memory",
            "NamedTemporaryFile",
            "TemporaryFile",
            "rmtree",
            "remove",
            "unlink",
        ),
        FILES,
    ),
    **dict.fromkeys(("system", "popen", "Popen", "spawnv", "execv", "fork", "kill"), PROCESS),
    **dict.fromkeys(("eval", "exec", "compile", "__import__", "loads", "breakpoint", "input", "CDLL"), CODE),
    **dict.fromkeys(
        ("getattr", "setattr", "delattr", "partial", "attrgetter", "methodcaller", "globals", "vars"), ATTRS
    ),
}

CONTAINERS = {
    "DictNode": {"builtins.dict"},
    "ListNode": {"builtins.list"},
    "TupleNode": {"builtins.tuple"},
    "SetNode": {"builtins.set"},
    "SliceNode": {"builtins.slice"},
    # JsonNode rebuilds with json.loads whatever type it names
    "JsonNode": {"builtins.str", "builtins.int", "builtins.float", "builtins.bool", "builtins.NoneType"},
}
OUR_PREPROCESSING = {
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
}
# Fitted helpers the predictors keep (found by fitting them; see the module docstring).
HELPERS = {
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._label.LabelBinarizer",
    # TransformedTargetRegressor's identity transformer; its func can only be an allowed function
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.cluster._bisect_k_means._BisectingTree",
}
FUNCTIONS = {"sklearn.cluster._kmeans._kmeans_single_lloyd", "sklearn.cluster._kmeans._kmeans_single_elkan"}
NUMPY_RANDOM = {
    "RandomStateNode": {"numpy.random.mtrand.RandomState"},
    "RandomGeneratorNode": {"numpy.random._generator.Generator"},
}


def _path(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _subclasses(module, base, exclude: tuple[str, ...] = ()) -> set[str]:
    return {
        _path(v)
        for k, v in vars(module).items()
        if isinstance(v, type) and issubclass(v, base) and v.__module__ == module.__name__ and not k.startswith(exclude)
    }


def _classes(module, name_ok) -> set[str]:
    return {
        _path(v)
        for k, v in vars(module).items()
        if isinstance(v, type) and v.__module__ == module.__name__ and name_ok(k)
    }


@cache
def allowed() -> dict[str, frozenset[str]]:
    """Loader name -> the type paths it may rebuild (computed once, from the installed libraries)."""
    from sklearn._loss import _loss, link, loss
    from sklearn.gaussian_process import kernels
    from sklearn.linear_model import _sgd_fast
    from sklearn.metrics import _dist_metrics
    from sklearn.utils import all_estimators

    from kubepredict.ml.algorithms import ALGORITHMS, import_estimator_class

    predictors = {
        _path(cls)
        for _, cls in all_estimators(type_filter=["classifier", "regressor", "cluster"])
        if cls.__module__.startswith("sklearn.")
    }
    predictors |= {_path(import_estimator_class(spec.estimator)) for spec in ALGORITHMS}  # GaussianMixture
    objects = (
        predictors
        | OUR_PREPROCESSING
        | HELPERS
        | _subclasses(loss, loss.BaseLoss)
        | _subclasses(link, link.BaseLink)
        | {_path(link.Interval)}
        | _subclasses(kernels, kernels.Kernel)
        | _subclasses(
            _dist_metrics,
            (_dist_metrics.DistanceMetric64, _dist_metrics.DistanceMetric32),
            exclude=("PyFunc", "DistanceMetric"),
        )
    )
    # numpy's own scalar types only (ml_dtypes and the like register theirs in sctypeDict when imported)
    scalars = {
        _path(t) for t in set(np.sctypeDict.values()) if t.__module__ == "numpy" and np.dtype(t).kind in "biufcSU"
    }
    losses = _classes(_loss, lambda k: k.startswith("Cy") and k != "CyLossFunction") | _classes(
        _sgd_fast, lambda k: k[0].isupper() and k not in ("Classification", "Regression")
    )
    candidates = {
        **CONTAINERS,
        **NUMPY_RANDOM,
        "TypeNode": CONTAINERS["JsonNode"] - {"builtins.NoneType"} | scalars,
        "NdArrayNode": {"numpy.ndarray"} | scalars,
        "DTypeNode": {"numpy.dtype"},
        "ObjectNode": objects,
        "TreeNode": {"sklearn.tree._tree.Tree"},
        "LossNode": losses,
        "FunctionNode": FUNCTIONS,
    }
    table = {loader: frozenset(t for t in types if denied(t) is None) for loader, types in candidates.items()}
    # A CachedNode points back at an object rebuilt elsewhere in the file: any type allowed anywhere.
    table["CachedNode"] = frozenset().union(*table.values())
    return table


def denied(path: str) -> str | None:
    """Why ``path`` is never loaded (it touches files, network, processes or code), or None."""
    if not isinstance(path, str):
        return "not a type name"
    parts = path.split(".")
    named = next((DENIED_NAMES[p] for p in reversed(parts[1:]) if p in DENIED_NAMES), None)
    if named is not None:
        return named
    if any(p.startswith("__") for p in parts):
        return ATTRS
    return next(
        (reason for module, reason in DENIED_MODULES.items() if path == module or path.startswith(module + ".")), None
    )


def is_allowed(path: str, loader: str | None = None) -> bool:
    """Whether ``path`` may be rebuilt by ``loader`` (by any loader when None)."""
    if denied(path) is not None:
        return False
    table = allowed()
    if loader is None:
        return path in table["CachedNode"]
    return path in table.get(loader, ())


def schema_nodes(data: bytes) -> set[tuple[str, str]]:
    """Every (loader, type path) a skops file's schema names; raises ValueError if it cannot be read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            schema = json.loads(z.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as exc:
        raise ValueError(f"no readable schema.json ({exc})") from None
    found, stack = set(), [schema]
    while stack:  # iterative: a deeply nested schema cannot exhaust the stack here
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                found.add((str(node.get("__loader__")), f"{node.get('__module__')}.{node.get('__class__')}"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def refusals(data: bytes, reported: Sequence[str] = ()) -> dict[str, str]:
    """``{type path: reason}`` for every node of ``data`` (and every type skops ``reported``) not allowed."""
    out: dict[str, str] = {}
    for loader, path in sorted(schema_nodes(data)):
        reason = denied(path)
        if reason is None and not is_allowed(path, loader):
            reason = f"not a type our models hold as {loader}"
        if reason is not None:
            out.setdefault(path, reason)
    for path, reason in reported_refusals(reported).items():
        out.setdefault(path, reason)
    return out


def reported_refusals(reported: Sequence[str]) -> dict[str, str]:
    """``{type path: reason}`` for the names skops derives beyond the schema (a method, a bit generator)."""
    return {path: denied(path) or "not a type our models hold" for path in reported if not is_allowed(path)}
