"""The installed package is the abi3 wheel with its type hints, not the source tree."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import ironbound


def test_installed_wheel_is_abi3_and_typed():
    dist = metadata.distribution("ironbound")
    wheel = dist.read_text("WHEEL") or ""
    assert "cp39-abi3" in wheel, wheel
    files = {str(f) for f in dist.files or []}
    for name in ["ironbound/__init__.py", "ironbound/__init__.pyi", "ironbound/py.typed"]:
        assert name in files, name
    assert "site-packages" in str(Path(ironbound.__file__))
    assert ironbound.__version__ == dist.version


def test_public_api_is_documented():
    for name in ironbound.__all__:
        obj = getattr(ironbound, name)
        if callable(obj):
            assert obj.__doc__, name
    assert ironbound.Model.bounds.__doc__ and "bit for bit" in ironbound.Model.bounds.__doc__
