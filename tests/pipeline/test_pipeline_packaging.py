"""Code archives are reproducible and content-addressed; every code URI is staged."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from pipeline_json import walk

from pipeline.definition import stage_files
from pipeline.packaging import code_archive, pack, write_staged
from pipeline.settings import Settings


def _source_dir(root: Path) -> Path:
    src = root / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "train.py").write_text("print('hello')\n")
    (src / "pkg" / "util.py").write_text("X = 1\n")
    (src / "pkg" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0junk")
    (src / ".hidden").write_text("secret\n")
    return src


def test_archive_is_byte_identical_regardless_of_mtimes_and_skips_caches(tmp_path):
    src = _source_dir(tmp_path)
    first = pack(src)
    for path in src.rglob("*"):
        path.touch()
    assert pack(src) == first
    assert first[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["pkg/util.py", "train.py"]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        assert tar.extractfile("train.py").read() == b"print('hello')\n"


def test_changing_a_file_changes_the_key_and_nothing_else_does(tmp_path):
    src = _source_dir(tmp_path)
    settings = Settings(staging_dir=tmp_path / "staging")
    before = code_archive(settings, "training", src)
    assert before.key.startswith("bincount/code/") and before.key.endswith("/sourcedir.tar.gz")
    (src / "pkg" / "__pycache__" / "other.pyc").write_bytes(b"more junk")
    assert code_archive(settings, "training", src).key == before.key
    (src / "pkg" / "util.py").write_text("X = 2\n")
    assert code_archive(settings, "training", src).key != before.key


def test_write_staged_lays_out_bucket_and_key_and_replaces_atomically(tmp_path):
    staged = {("bucket", "a/b/file.txt"): b"one"}
    (target,) = write_staged(staged, tmp_path)
    assert target == tmp_path / "bucket" / "a" / "b" / "file.txt"
    assert target.read_bytes() == b"one"
    write_staged({("bucket", "a/b/file.txt"): b"two"}, tmp_path)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_every_code_uri_in_the_definition_is_staged(built, tmp_path):
    settings = Settings(staging_dir=tmp_path)
    root = stage_files(settings)
    assert root == tmp_path
    code_prefix = f"s3://{settings.bucket}/{settings.prefix}/code/"
    uris = {
        v
        for v in walk(json.loads(built.definition))
        if isinstance(v, str) and v.startswith("s3://")
    }
    code_uris = sorted(u for u in uris if u.startswith(code_prefix))
    # two processing inputs per step (code dir, runproc.sh, install_requirements.py) + training
    assert len(code_uris) >= 4, code_uris
    for uri in code_uris:
        local = root / uri.removeprefix("s3://")
        if uri.endswith("/"):
            # FrameworkProcessor mounts the whole prefix: it must hold the archive alone.
            assert sorted(p.name for p in local.iterdir()) == ["sourcedir.tar.gz"], uri
        else:
            assert local.is_file(), uri
    runprocs = [u for u in code_uris if u.endswith("runproc.sh")]
    assert runprocs
    for uri in runprocs:
        script = (root / uri.removeprefix("s3://")).read_text()
        assert "tar -xzf sourcedir.tar.gz" in script
        assert ("prepare.py" in script) or ("evaluate.py" in script)
    # Nothing staged that the definition does not point at (besides the archives' prefixes).
    staged = {f"s3://{p.relative_to(root).as_posix()}" for p in root.rglob("*") if p.is_file()}
    pointed = {u + "sourcedir.tar.gz" if u.endswith("/") else u for u in code_uris}
    # Besides the code: the weights channel's READMEs (its prefix is a parameter's choice).
    weights = {u for u in staged if "/weights/" in u}
    assert {u.rsplit("/weights/", 1)[1] for u in weights} == {
        "imagenet/README.txt",
        "none/README.txt",
    }
    assert staged - weights == pointed


def test_archive_modes_follow_the_x_bits_not_the_packing_user(tmp_path, monkeypatch):
    # root may execute any file with an x bit, os.access says so for everything it packs.
    monkeypatch.setattr("pipeline.packaging.os.access", lambda *args, **kwargs: True)
    (tmp_path / "plain.py").write_text("x = 1\n")
    (tmp_path / "plain.py").chmod(0o644)
    (tmp_path / "tool.sh").write_text("#!/bin/sh\n")
    (tmp_path / "tool.sh").chmod(0o700)
    with tarfile.open(fileobj=io.BytesIO(pack(tmp_path)), mode="r:gz") as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert modes == {"plain.py": 0o644, "tool.sh": 0o755}
