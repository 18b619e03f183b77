"""Atomic writes: modes from the umask, links replaced and never written through."""

from __future__ import annotations

import os

import pytest

from manifold_align.files import apply_umask, current_umask, write_atomic


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=["022", "027", "077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_write_atomic_gives_the_umask_modes(tmp_path, umask):
    assert current_umask() == umask
    path = write_atomic(tmp_path / "a.txt", "hello\n", durable=True)
    assert path.read_text() == "hello\n"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary left


def test_apply_umask_fixes_a_private_tree(tmp_path, umask):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True, mode=0o700)
    (tree / "sub" / "f").write_text("x")
    os.chmod(tree / "sub" / "f", 0o600)
    apply_umask(tree)
    assert os.stat(tree).st_mode & 0o777 == 0o777 & ~umask
    assert os.stat(tree / "sub").st_mode & 0o777 == 0o777 & ~umask
    assert os.stat(tree / "sub" / "f").st_mode & 0o777 == 0o666 & ~umask


def test_write_atomic_replaces_a_link_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").symlink_to(outside)
    write_atomic(folder / "metrics.jsonl", "new\n")
    assert outside.read_text() == "precious\n"
    assert not (folder / "metrics.jsonl").is_symlink()
    assert (folder / "metrics.jsonl").read_text() == "new\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("old\n")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
