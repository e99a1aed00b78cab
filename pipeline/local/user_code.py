"""User-code wheels unpacked, not pip-installed, while a local run executes its steps.

With ``user_code: wheel`` TFX packages the Transform and Trainer module files as a
wheel per run, and each time an executor loads a function from it (three times in
the Transform, once in the Trainer) it runs ``pip install --target <new temp folder>
<wheel>`` in a subprocess (``udf_utils.install_to_temp_directory``, called by
``TempPipInstallContext.__enter__``, tfx/components/util/udf_utils.py; from
``import_utils.import_func_from_module``, tfx/utils/import_utils.py). That was
0.6 s each, 2.4 s of a 2k-image run (benchmarks/README.md, "Fixed cost").

Such a wheel is pure Python modules (``py_modules`` in TFX's ephemeral setup.py) with
no dependencies (no ``Requires-Dist``), scripts or data files, so unpacking it into the folder is what pip
leaves there, less pip's own bookkeeping in the ``.dist-info`` folder (``INSTALLER``,
``REQUESTED``, ``direct_url.json`` and the rewritten ``RECORD``) and bytecode
(tests/pipeline/local/test_user_code.py compares the two). Anything else (a
requirement specifier, a wheel with scripts or data) still goes to pip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterator

from tfx.components.util import udf_utils

from components.modules import log_names

# The run's log file only: the console shows steps, not how their code was loaded.
_file_log = logging.getLogger(f"{log_names.FILE_ONLY_PREFIX}.user_code")

# Wheel members that pip would install somewhere other than the target folder itself.
_NOT_PLAIN = (".data/",)


def _plain_wheel(path: str) -> bool:
    """Whether ``path`` is a local wheel with no dependencies whose members all land in the target folder
    as they are."""
    if not path.endswith(".whl") or not os.path.isfile(path):
        return False
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        if any(marker in name for name in names for marker in _NOT_PLAIN):
            return False
        metadata = [name for name in names if name.endswith(".dist-info/METADATA")]
        return not any(b"Requires-Dist:" in wheel.read(name) for name in metadata)


def unpack_to_temp_directory(pip_dependency: str, temp_dir: str | None = None) -> str:
    """``udf_utils.install_to_temp_directory``, unpacking plain wheels instead of running pip.

    Args:
      pip_dependency: A wheel path, or any pip requirement (those go to pip).
      temp_dir: The folder to install into (default: a new temporary one).

    Returns:
      The folder, for the import path.
    """
    if not _plain_wheel(pip_dependency):
        return _PIP_INSTALL(pip_dependency, temp_dir=temp_dir)
    temp_dir = temp_dir or tempfile.mkdtemp()
    with zipfile.ZipFile(pip_dependency) as wheel:
        wheel.extractall(temp_dir)  # zipfile drops absolute paths and ".." parts
    _file_log.info("Unpacked user code %s into %s.", os.path.basename(pip_dependency), temp_dir)
    return temp_dir


_PIP_INSTALL = udf_utils.install_to_temp_directory


@contextlib.contextmanager
def unpacked_wheels() -> Iterator[None]:
    """While the block runs, TFX executors in this process unpack user-code wheels instead of pip-installing."""
    previous = udf_utils.install_to_temp_directory
    udf_utils.install_to_temp_directory = unpack_to_temp_directory
    try:
        yield
    finally:
        if udf_utils.install_to_temp_directory is unpack_to_temp_directory:
            udf_utils.install_to_temp_directory = previous
