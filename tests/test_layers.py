"""The import contracts (``.importlinter``): kept by the code, and able to fail.

The second test copies the project's packages, adds one import that runs back up
(a component importing the CLI), and checks that ``lint-imports`` refuses it and
names the import: a contract that could not fail would guard nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "components", "kubeflow", "schemas")
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint_imports(project: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``project``'s packages, found first on the path (not the installed checkout)."""
    return subprocess.run(
        [LINT_IMPORTS, "--config", os.path.join(project, ".importlinter"), "--no-cache"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": project},
        capture_output=True,
        text=True,
        check=False,
    )


def _copy_project(destination: str) -> None:
    for package in PACKAGES:
        shutil.copytree(
            os.path.join(ROOT, package),
            os.path.join(destination, package),
            ignore=shutil.ignore_patterns("__pycache__", "*.h5", "*.yaml", "*.j2"),
        )
    shutil.copy(os.path.join(ROOT, ".importlinter"), destination)


def test_no_import_runs_back_up() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "upward_import", "contract"),
    [
        ("components/ingest/splits.py", "import pipeline.cli.main", "Layers"),
        ("pipeline/report/run_report.py", "import pipeline.local.runner", "Layers"),
        ("components/serving/repository.py", "import components.pusher.component", "Components"),
    ],
)
def test_an_import_that_runs_back_up_breaks_a_contract(
    tmp_path: object, module: str, upward_import: str, contract: str
) -> None:
    project = str(tmp_path)
    _copy_project(project)
    with open(os.path.join(project, module), "a") as handle:
        handle.write(f"\n{upward_import}  # planted by the test\n")

    result = _lint_imports(project)

    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken
    importer = module.removesuffix(".py").replace("/", ".")
    imported = upward_import.removeprefix("import ")
    assert f"{importer} -> {imported}" in " ".join(broken.split()), broken
