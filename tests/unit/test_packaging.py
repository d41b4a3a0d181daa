"""shared/pyproject.toml: the package data it lists exists, and covers the files the package reads."""

import tomllib
from pathlib import Path

import kubepredict

PACKAGE = Path(kubepredict.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _patterns() -> list[str]:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["kubepredict"]


def test_every_package_data_pattern_names_files_that_exist():
    for pattern in _patterns():
        assert list(PACKAGE.glob(pattern)), f"package data {pattern!r} matches no file"


def test_the_data_and_migration_files_are_packaged():
    packaged = {p for pattern in _patterns() for p in PACKAGE.glob(pattern)}
    needed = [*PACKAGE.glob("data/*"), *PACKAGE.glob("catalog/migrations/**/*.*")]
    missing = [
        str(p.relative_to(PACKAGE))
        for p in needed
        if p.is_file() and "__pycache__" not in p.parts and p not in packaged
    ]
    assert not missing, f"not in package data: {missing}"
