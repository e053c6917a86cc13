"""Locations: local paths and buckets on a real S3-compatible server (moto, started by the suite)."""

import pickle

import pytest

from polyglot_lion import storage
from polyglot_lion.storage import LocationError


def test_local_path_resolves_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loc = storage.resolve("store")
    assert loc.is_local and loc.path == str(tmp_path / "store") and str(loc) == str(tmp_path / "store")
    loc.join("a", "b.txt").write_text("x")
    assert (tmp_path / "store" / "a" / "b.txt").read_text() == "x"
    assert [f.name for f in loc.files(recursive=True)] == ["b.txt"]
    assert not list((tmp_path / "store" / "a").glob("*.tmp-*"))
    assert storage.resolve(f"file://{tmp_path}/store").path == loc.path


def test_unknown_scheme_and_missing_bucket_name_are_named():
    with pytest.raises(LocationError, match=r"'ftp://host/x'.*scheme 'ftp'.*s3://bucket/prefix"):
        storage.resolve("ftp://host/x")
    with pytest.raises(LocationError, match="no bucket name"):
        storage.resolve("s3:///prefix")


def test_bucket_round_trip_and_listing(bucket):
    loc = storage.resolve(f"{bucket}/store/")
    assert loc.scheme == "s3" and str(loc) == f"{bucket}/store"
    loc.join("data", "one.txt").write_text("uno")
    loc.join("data", "two.txt").write_bytes(b"dos")
    assert loc.join("data", "one.txt").read_text() == "uno"
    assert [f.name for f in loc.join("data").files(".txt")] == ["one.txt", "two.txt"]
    assert loc.join("data").is_dir() and loc.join("data", "two.txt").is_file()
    loc.join("data").delete()
    assert loc.join("data").files() == []


def test_location_pickles_with_its_endpoint_and_keys(bucket, s3_server, monkeypatch):
    """A Ray worker on another node may have no AWS variables: the pickled filesystem must carry them."""
    loc = storage.resolve(f"{bucket}/k")
    loc.write_text("v")
    for var in s3_server.env:
        monkeypatch.delenv(var, raising=False)
    assert pickle.loads(pickle.dumps(loc)).read_text() == "v"


def test_missing_bucket_fails_naming_it(s3_server):
    with pytest.raises(LocationError, match=r"store s3://no-such-bucket-x/s: bucket 'no-such-bucket-x' does not exist"):
        storage.check_location("s3://no-such-bucket-x/s", write=True, what="store")


def test_denied_bucket_fails_naming_it(s3_server, bucket):
    s3_server.deny_all(bucket.removeprefix("s3://"))
    with pytest.raises(LocationError, match=rf"run folder {bucket}/runs: cannot (write to|read) it"):
        storage.check_location(f"{bucket}/runs", write=True, what="run folder")


def test_writable_bucket_and_local_checks(bucket, tmp_path):
    assert storage.check_location(f"{bucket}/out", write=True).files() == []  # the probe is gone
    storage.check_location(tmp_path / "new" / "deeper", write=True)
    with pytest.raises(LocationError, match="does not exist"):
        storage.check_location(tmp_path / "absent", write=False, what="input")


def test_ray_storage_for_run_config(bucket, tmp_path):
    path, fs = storage.ray_storage(f"{bucket}/runs")
    assert path == f"{bucket.removeprefix('s3://')}/runs" and fs is not None
    assert storage.ray_storage(tmp_path) == (str(tmp_path), None)
