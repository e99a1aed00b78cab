"""Versions appear whole, are never overwritten, and killed pushes leave nothing behind for long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from tfx.utils import io_utils

from components.serving import repository as serving_dir
from tests.helpers import write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(root: str, content: bytes = b"graph") -> str:
    write(os.path.join(root, "saved_model.pb"), content)
    write(os.path.join(root, "variables", "variables.index"), b"index")
    write(os.path.join(root, "variables", "variables.data-00000-of-00001"), b"weights" * 100)
    return root


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def test_interrupted_push_leaves_no_visible_version(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(f"{tmp_path}/model")
    base = f"{tmp_path}/serving"
    original = io_utils.fileio.copy

    def copy_then_fail(source: str, destination: str, overwrite: bool = False) -> None:
        original(source, destination, overwrite)
        if destination.endswith("variables.index"):
            raise KeyboardInterrupt("killed mid-copy")

    monkeypatch.setattr(io_utils.fileio, "copy", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        serving_dir.atomic_push(model, base, 1700000000)
    assert serving_dir.list_versions(base) == []
    assert os.listdir(base) == []  # the staging folder is cleaned up too
    monkeypatch.setattr(io_utils.fileio, "copy", original)
    final = serving_dir.atomic_push(model, base, 1700000000)
    assert sorted(os.listdir(final)) == ["saved_model.pb", "variables"]


def test_two_pushes_in_the_same_second_get_two_versions(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _model(f"{tmp_path}/a", b"graph A"), _model(f"{tmp_path}/b", b"graph B")
    base = f"{tmp_path}/serving"
    monkeypatch.setattr(serving_dir.time, "time", lambda: 1700000000.5)
    original = io_utils.fileio.copy
    finished: list[str] = []

    def copy_while_another_push_runs(source: str, destination: str, overwrite: bool = False) -> None:
        original(source, destination, overwrite)
        if source.startswith(first) and not finished:
            # Push B starts and ends while push A is copying: both chose the same second,
            # and B's clean-up of killed pushes must leave A's live staging folder alone.
            finished.append(serving_dir.atomic_push(second, base))

    monkeypatch.setattr(io_utils.fileio, "copy", copy_while_another_push_runs)
    pushed_a = serving_dir.atomic_push(first, base)
    assert finished == [f"{base}/1700000000"]
    assert pushed_a == f"{base}/1700000001"
    assert _read(f"{base}/1700000000/saved_model.pb") == b"graph B"  # not overwritten by A
    assert _read(f"{base}/1700000001/saved_model.pb") == b"graph A"
    assert sorted(os.listdir(base)) == ["1700000000", "1700000001"]


def test_a_taken_version_is_never_overwritten(tmp_path: object) -> None:
    base = f"{tmp_path}/serving"
    for version in (5, 6):
        _model(f"{base}/{version}", f"served {version}".encode())
    model = _model(f"{tmp_path}/new", b"new graph")
    assert serving_dir.atomic_push(model, base, version=5) == f"{base}/7"
    assert _read(f"{base}/5/saved_model.pb") == b"served 5"
    with pytest.raises(FileExistsError, match=r"Versions 5 to 7 under .*serving are all taken"):
        serving_dir.atomic_push(model, base, version=5, attempts=3)
    assert sorted(os.listdir(base)) == ["5", "6", "7"]  # no staging folder left


def test_versions_are_pruned_and_increase(tmp_path: object) -> None:
    base = str(tmp_path)
    for version in (5, 7, 9, 11):
        os.makedirs(os.path.join(base, str(version)))
    os.makedirs(os.path.join(base, ".tmp-12-abc"))
    assert serving_dir.prune_versions(base, keep=2) == [5, 7]
    assert serving_dir.list_versions(base) == [9, 11]
    assert serving_dir.next_version(base) > 11
    os.makedirs(os.path.join(base, "99999999999"))
    assert serving_dir.next_version(base) == 100000000000


def test_newest_complete_numeric_version(tmp_path: object) -> None:
    base = str(tmp_path)
    for version in ("9", "100"):
        write(os.path.join(base, version, "saved_model.pb"), b"x")
    os.makedirs(os.path.join(base, "200"))  # incomplete: no saved_model.pb
    write(os.path.join(base, "tmp-300", "saved_model.pb"), b"x")  # not a version
    assert serving_dir.newest_model_dir(base) == os.path.join(base, "100")
    assert serving_dir.newest_model_dir(os.path.join(base, "200")) is None
    assert serving_dir.newest_model_dir(os.path.join(base, "missing")) is None


def test_fingerprint_follows_weights(tmp_path: object) -> None:
    first, same = _model(f"{tmp_path}/a"), _model(f"{tmp_path}/b")
    assert serving_dir.model_fingerprint(first) == serving_dir.model_fingerprint(same)
    write(os.path.join(same, "variables", "variables.data-00000-of-00001"), b"other weights")
    assert serving_dir.model_fingerprint(first) != serving_dir.model_fingerprint(same)


_KILLED_PUSH = """
import sys, time
from tfx.utils import io_utils
from components.serving import repository as serving_dir

original = io_utils.fileio.copy

def copy_then_hang(source, destination, overwrite=False):
    original(source, destination, overwrite)
    print("copying", flush=True)
    time.sleep(600)

io_utils.fileio.copy = copy_then_hang
serving_dir.atomic_push(sys.argv[1], sys.argv[2])
"""


def test_the_next_push_removes_what_a_killed_push_left(tmp_path: object) -> None:
    model, base = _model(f"{tmp_path}/model"), f"{tmp_path}/serving"
    push = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUSH, model, base], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert push.stdout.readline() == "copying\n"
    finally:
        push.send_signal(signal.SIGKILL)  # no except or finally runs in the push
        push.wait()
    leftovers = os.listdir(base)
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")
    final = serving_dir.atomic_push(model, base)
    assert os.listdir(base) == [os.path.basename(final)]


def _staging(base: str, name: str, age_seconds: float) -> str:
    folder = write(os.path.join(base, name, "saved_model.pb"), b"part")
    then = time.time() - age_seconds
    for path in (folder, os.path.dirname(folder)):
        os.utime(path, (then, then))
    return os.path.dirname(folder)


def test_staging_of_other_hosts_is_removed_only_when_old(tmp_path: object) -> None:
    base = str(tmp_path)
    hours = 3600
    old_elsewhere = _staging(base, ".tmp-7-otherhost-4321-deadbeef", age_seconds=7 * hours)
    old_unknown_owner = _staging(base, ".tmp-8-0badc0de", age_seconds=7 * hours)
    live_elsewhere = _staging(base, ".tmp-9-otherhost-4321-feedf00d", age_seconds=60)
    assert serving_dir.remove_stale_staging(base, max_age_seconds=6 * hours) == [old_elsewhere, old_unknown_owner]
    assert os.listdir(base) == [os.path.basename(live_elsewhere)]
