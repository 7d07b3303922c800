"""reconciler.lazy: every package that names its contents lazily gives each name from its submodule, once,
and an unknown name is an AttributeError that imports nothing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["reconciler.notify", "reconciler.drivers.directory", "reconciler.drivers.http",
            "reconciler.drivers.node_red", "reconciler.drivers.flink_sql"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_name_is_its_submodules_object(package: str) -> None:
    pkg = importlib.import_module(package)
    where = pkg._WHERE
    assert where and set(pkg.__all__) <= set(where) | set(vars(pkg))
    for name, sub in where.items():
        module = importlib.import_module(f"{package}.{sub or name}")
        expected = module if sub is None else getattr(module, name)
        assert getattr(pkg, name) is expected
        assert vars(pkg)[name] is expected  # kept: the hook is not asked again


@pytest.mark.parametrize("package", PACKAGES)
def test_an_unknown_name_raises_and_imports_nothing(package: str) -> None:
    code = (f"import sys, {package} as p\n"
            "before = set(sys.modules)\n"
            "try:\n    p.no_such_name\nexcept AttributeError as e:\n    print(e)\n"
            "print(hasattr(p, 'other_missing'))\n"
            "print(sorted(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [f"module {package!r} has no attribute 'no_such_name'", "False", "[]"]
