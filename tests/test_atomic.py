"""edgesr_cli.atomic: files and folders are replaced whole or not at all, and nothing is left beside them."""

from __future__ import annotations

import os
import stat

import pytest

from edgesr_cli import atomic


def test_a_file_is_replaced_whole_keeping_its_mode(tmp_path):
    target = tmp_path / "report.json"
    atomic.write_bytes_atomic(target, b"first")
    target.chmod(0o640)
    atomic.write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_failed_file_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "report.json"
    target.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"new, but only h")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_folder_is_swapped_whole_or_kept(tmp_path):
    out = tmp_path / "model"
    with atomic.replacing_folder(out) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic.replacing_folder(out) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(os.listdir(out)) == ["b.txt"]
    with pytest.raises(RuntimeError), atomic.replacing_folder(out) as tmp:
        (tmp / "c.txt").write_text("3")
        raise RuntimeError("interrupted")
    assert sorted(os.listdir(out)) == ["b.txt"]
    assert os.listdir(tmp_path) == ["model"]


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "export"
    with atomic.replacing_folder(out) as tmp:
        (tmp / "manifest.json").write_text("old")
    tmp = atomic.temp_folder(out)
    (tmp / "manifest.json").write_text("new")
    real_rename = type(tmp).rename

    def rename(self, target):
        if self == tmp:
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(type(tmp), "rename", rename)
    with pytest.raises(OSError):
        atomic.swap_folder(tmp, out)
    assert (out / "manifest.json").read_text() == "old"


def test_what_a_dead_process_left_is_cleared_or_put_back(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no such process
    out = tmp_path / "checkpoint"
    (tmp_path / f".checkpoint.tmp-{dead}").mkdir()
    old = tmp_path / f".checkpoint.old-{dead}"
    old.mkdir()
    (old / "state.json").write_text("{}")  # it died between the two renames: the old folder is the good one
    atomic.clear_stale(out)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    assert (out / "state.json").read_text() == "{}"
    mine = tmp_path / f".checkpoint.tmp-{os.getpid()}"
    mine.mkdir()  # a live process's temp folder is left alone
    atomic.clear_stale(out)
    assert mine.is_dir()


def test_processes_that_write_one_folder_share_its_temp_folder_by_tag(tmp_path):
    out = tmp_path / "checkpoint"
    tmp = atomic.temp_folder(out, tag="ranks")
    assert tmp == atomic.temp_folder_path(out, "ranks") == tmp_path / ".checkpoint.tmp-ranks"
    (tmp / "rng_rank1.safetensors").write_bytes(b"x")
    atomic.swap_folder(tmp, out)
    assert os.listdir(tmp_path) == ["checkpoint"]
