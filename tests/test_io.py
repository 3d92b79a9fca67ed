import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jointembed.io import atomic_write, atomic_write_json


def test_atomic_write_json_round_trip(tmp_path):
    path = atomic_write_json(tmp_path / "sub" / "x.json", {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]}


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"version": 1})

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"version": 1}


def test_written_files_follow_the_umask(tmp_path):
    import os

    from jointembed.io import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644


def test_a_users_own_files_beside_a_saved_folder_are_left_alone(tmp_path):
    from jointembed.io import atomic_write_folder

    folder = tmp_path / "models"
    atomic_write_folder(folder, lambda tmp: (tmp / "config.json").write_text("1"), "config.json")
    own_backup = tmp_path / ".models.bak.old"  # the user's, named like the leftovers a save used to delete
    own_backup.mkdir()
    (own_backup / "config.json").write_text("my backup")
    own_file = tmp_path / ".models.notes.tmp"
    own_file.write_text("mine")
    unmarked = tmp_path / ".models.jointembed-1@host.abc.old"  # our name pattern, but no marker inside
    unmarked.mkdir()
    atomic_write_folder(folder, lambda tmp: (tmp / "config.json").write_text("2"), "config.json")
    assert (folder / "config.json").read_text() == "2"
    assert (own_backup / "config.json").read_text() == "my backup" and own_file.read_text() == "mine"
    assert unmarked.is_dir()


def test_leftovers_of_a_killed_save_of_ours_are_removed(tmp_path):
    from jointembed.io import SAVE_MARKER, atomic_write_folder, atomic_write_text

    folder = tmp_path / "models"
    leftover = tmp_path / ".models.jointembed-1@host.abc.tmp"  # a killed save's temporary folder, marked
    leftover.mkdir()
    (leftover / SAVE_MARKER).write_text(json.dumps({"by": "jointembed", "folder": "models", "purpose": "new"}))
    atomic_write_folder(folder, lambda tmp: (tmp / "config.json").write_text("1"), "config.json")
    assert not leftover.exists()
    # a file's temporary is removed once its writer (a process of this host) has ended
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    host = socket.gethostname()
    stale = tmp_path / f".metrics.json.jointembed-{dead}@{host}.xyz.tmp"
    stale.write_text("half")
    alive = tmp_path / f".metrics.json.jointembed-{os.getpid()}@{host}.uvw.tmp"
    alive.write_text("in progress")
    atomic_write_text(tmp_path / "metrics.json", "{}")
    assert not stale.exists() and alive.exists()


def test_saves_never_set_the_umask_and_sync_files_and_folders(tmp_path, monkeypatch):
    from jointembed import io

    umask_calls, synced = [], []
    monkeypatch.setattr(os, "umask", lambda *args: umask_calls.append(args) or 0o022)
    fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)

    def write(tmp):
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(b"0")

    folder = io.atomic_write_folder(tmp_path / "model", write, "config.json")
    io.atomic_write_text(tmp_path / "metrics.json", "{}")
    assert umask_calls == []
    if os.path.exists("/proc/self/fd"):
        names = {Path(path).name for path in synced}
        assert {"config.json", "weights.bin", "sub"} <= names  # files and folders, before the rename
        assert any(name.startswith(".metrics.json.jointembed-") for name in names)
        assert str(tmp_path) in synced  # the parent folder, after the rename
    else:
        assert synced
    assert (folder / "config.json").stat().st_mode & 0o777 == 0o666 & ~io.current_umask()


def test_current_umask_is_read_without_setting_it():
    from jointembed.io import current_umask

    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
    finally:
        os.umask(previous)
