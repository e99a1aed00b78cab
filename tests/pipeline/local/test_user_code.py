"""User-code wheels: unpacking leaves what pip leaves (less pip's bookkeeping), and TFX imports from it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tfx.components.util import udf_utils
from tfx.utils import import_utils

from pipeline.local import user_code

# What pip adds of its own: its install records and bytecode.
_PIP_ONLY = ("INSTALLER", "REQUESTED", "direct_url.json", "RECORD")


def _tree(root: str) -> dict[str, bytes]:
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [name for name in dirs if name != "__pycache__"]
        for name in names:
            if name not in _PIP_ONLY:
                with open(os.path.join(folder, name), "rb") as handle:
                    files[os.path.relpath(os.path.join(folder, name), root)] = handle.read()
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A user-code wheel as TFX packages one (two modules, one importing the other)."""
    source = tmp_path_factory.mktemp("user_module")
    (source / "helper_mod.py").write_text("VALUE = 41\n")
    (source / "entry_mod.py").write_text("import helper_mod\n\n\ndef user_fn():\n    return helper_mod.VALUE + 1\n")
    root = tmp_path_factory.mktemp("pipeline_root")
    path, _ = udf_utils.package_user_module_file("Trainer", str(source / "entry_mod.py"), str(root))
    return path


def test_unpacking_leaves_what_pip_install_leaves(wheel: str, tmp_path: object) -> None:
    by_pip, unpacked = os.path.join(str(tmp_path), "pip"), os.path.join(str(tmp_path), "unpacked")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", by_pip, wheel], check=True)
    assert user_code.unpack_to_temp_directory(wheel, unpacked) == unpacked
    assert _tree(unpacked) == _tree(by_pip)
    assert {"entry_mod.py", "helper_mod.py"} <= set(_tree(unpacked))


def test_tfx_imports_user_code_from_the_unpacked_wheel_and_pip_is_restored(
    wheel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = []
    monkeypatch.setattr(subprocess, "check_call", lambda command, **_: ran.append(command))
    with user_code.unpacked_wheels():
        user_fn = import_utils.import_func_from_module(f"entry_mod@{wheel}", "user_fn")
    assert user_fn() == 42 and not ran  # no pip subprocess
    assert udf_utils.install_to_temp_directory is user_code._PIP_INSTALL
    for name in ("entry_mod", "helper_mod"):
        sys.modules.pop(name, None)


def test_anything_but_a_plain_wheel_goes_to_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    ran = []
    monkeypatch.setattr(user_code, "_PIP_INSTALL", lambda dependency, temp_dir=None: ran.append(dependency) or "x")
    assert user_code.unpack_to_temp_directory("setuptools==70.0", str(tmp_path)) == "x"
    assert user_code.unpack_to_temp_directory(os.path.join(str(tmp_path), "missing.whl")) == "x"
    assert ran == ["setuptools==70.0", os.path.join(str(tmp_path), "missing.whl")]


def test_a_wheel_with_dependencies_goes_to_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import zipfile

    path = os.path.join(str(tmp_path), "dep-0.0-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("dep_mod.py", "")
        wheel.writestr("dep-0.0.dist-info/METADATA", "Name: dep\nVersion: 0.0\nRequires-Dist: numpy\n")
    ran = []
    monkeypatch.setattr(user_code, "_PIP_INSTALL", lambda dependency, temp_dir=None: ran.append(dependency) or "x")
    assert user_code.unpack_to_temp_directory(path, str(tmp_path)) == "x" and ran == [path]
