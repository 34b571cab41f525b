"""The lake on an S3-compatible store: moto's S3 server on 127.0.0.1 stands in for MinIO or a
cloud's S3 API. A tiny simulated county lands a day in ``s3://<bucket>/lake`` through the same
pipeline functions the DAGs call; the manifests describe the objects; a rerun of the day gives
the same objects and rows; the warehouse reads the lake through s3fs registered in DuckDB."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import require_server
from ingest_helpers import api_server, run_day, window

from etl.contracts import load_systems
from etl.ledger import Ledger
from etl.quality import publish_quality
from etl.settings import LAKE_URL_ENV, Paths, paths

moto_server = pytest.importorskip(
    "moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')"
)
pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e .)")

BUCKET = "county-lake"
LAKE_URL = f"s3://{BUCKET}/lake"
SCALE = 0.01


def test_default_lake_is_the_local_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(LAKE_URL_ENV, raising=False)
    where = paths(tmp_path)
    assert not where.lake_remote
    assert where.lake == tmp_path / "lake" and where.lake_root == str(tmp_path / "lake")
    assert where.staging == tmp_path / "lake" / "_staging"
    local = Paths(tmp_path, f"file://{tmp_path}/elsewhere")
    assert not local.lake_remote and local.lake == tmp_path / "elsewhere"
    assert local.staging == tmp_path / "elsewhere" / "_staging"  # one filesystem: renames


def test_remote_lake_keeps_everything_else_local(tmp_path):
    where = Paths(tmp_path, LAKE_URL + "/")
    assert where.lake_remote and where.lake_root == LAKE_URL
    for local in (where.staging, where.ledger, where.warehouse, where.airflow, where.state):
        assert local.is_relative_to(tmp_path)


class S3Lake:
    def __init__(self, home: Path, endpoint: str):
        self.home, self.endpoint = home, endpoint

    @property
    def where(self) -> Paths:
        return paths(self.home)

    def fs(self):
        from etl import lake

        return lake.filesystem(self.where)[0]

    def objects(self) -> dict[str, str]:
        """Every object of the lake: key -> ETag."""
        fs = self.fs()
        return {k: fs.info(k)["ETag"] for k in fs.find(f"{BUCKET}/lake")}

    def rows(self, zone: str, system: str, dataset: str) -> int:
        from etl import lake

        with duckdb.connect() as con:
            lake.register(con, self.where)
            glob = f"{LAKE_URL}/{zone}/{system}/{dataset}/**/*.parquet"
            if not con.execute(f"select count(*) from glob('{glob}')").fetchone()[0]:
                return 0
            return con.execute(f"select count(*) from read_parquet('{glob}')").fetchone()[0]


@pytest.fixture(scope="module")
def s3_lake(tmp_path_factory):
    """Moto's S3 server on a free port, the lake at s3://county-lake/lake, a tiny county's
    sources (scale 0.01, day 1), and day 1 landed."""
    from etl import warehouse
    from etl.simulate import simulate

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    home = tmp_path_factory.mktemp("s3lake") / "data"
    home.mkdir()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for var in [v for v in os.environ if v.startswith(("COUNTYLAKE_", "AWS_"))]:
                mp.delenv(var)
            mp.setenv("COUNTYLAKE_HOME", str(home))
            mp.setenv(LAKE_URL_ENV, LAKE_URL)
            mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
            mp.setenv("AWS_ACCESS_KEY_ID", "county-test")  # moto accepts any pair
            mp.setenv("AWS_SECRET_ACCESS_KEY", "county-test-secret")
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
            mp.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
            mp.delenv(warehouse.KEY_ENV, raising=False)
            lake = S3Lake(home, f"http://{host}:{port}")
            lake.fs().mkdir(BUCKET)
            simulate(home, scale=SCALE, days=1, seed=7)
            with api_server(home, mp):
                lake.day1, errors = run_day(1)
            assert errors == {}
            publish_quality(lake.where)  # once for the batch, as `countylake run` does
            yield lake
    finally:
        server.stop()


def _windows(lake: S3Lake, zone: str) -> dict[str, list[str]]:
    """Window prefix -> the object names in it."""
    found: dict[str, list[str]] = {}
    for key in lake.fs().find(f"{BUCKET}/lake/{zone}"):
        folder, name = key.rsplit("/", 1)
        found.setdefault(folder, []).append(name)
    return found


def test_a_day_lands_as_objects_with_manifests(s3_lake):
    datasets = {f"{s.system}.{d.dataset}" for s in load_systems() for d in s.datasets}
    assert set(s3_lake.day1) == datasets
    windows = _windows(s3_lake, "raw")
    assert len(windows) == len(datasets)
    fs = s3_lake.fs()
    for folder, names in windows.items():
        assert folder.endswith("/load_date=2026-11-01/window=0000"), folder
        assert "_manifest.json" in names
        manifest = json.loads(fs.cat_file(f"{folder}/_manifest.json"))
        assert manifest["window"] == list(window(1))
        assert sorted(e["path"] for e in manifest["files"]) == sorted(
            n for n in names if n != "_manifest.json"
        )  # the window holds exactly its manifest's files
        for entry in manifest["files"]:
            body = fs.cat_file(f"{folder}/{entry['path']}")
            assert len(body) == entry["bytes"]
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert sum(e.get("rows", 0) for e in manifest["files"]) == manifest["rows"]["landed"]
    for name, result in s3_lake.day1.items():
        system, dataset = name.split(".")
        assert result["partition"].startswith(f"{LAKE_URL}/raw/{system}/{dataset}/")
        assert s3_lake.rows("raw", system, dataset) == result["rows_landed"], name
        assert s3_lake.rows("quarantine", system, dataset) == result["rows_quarantined"], name
    assert sum(r["rows_quarantined"] for r in s3_lake.day1.values()) > 0  # the simulated dirt
    # nothing of the lake was written locally, and the staging area was cleaned up
    local = s3_lake.where.lake
    assert not (local / "raw").exists() and not (local / "quarantine").exists()
    assert not [p for p in (local / "_staging").rglob("*") if p.is_file()]
    ledger = Ledger(s3_lake.where.ledger).latest()
    assert {r["status"] for r in ledger} == {"landed"}


def test_quality_results_are_published_to_the_store(s3_lake):
    fs = s3_lake.fs()
    for name in ("scorecard", "rule_results"):
        assert fs.exists(f"{BUCKET}/lake/quality/{name}.parquet")
    with fs.open(f"{BUCKET}/lake/quality/scorecard.parquet") as f:
        card = pq.read_table(f).to_pylist()
    assert card and {str(r["day"]) for r in card} == {"2026-11-01"}
    assert sum(r["rows_read"] for r in card) == sum(r["rows_read"] for r in s3_lake.day1.values())


# one dataset per strategy and kind (SQL watermark, snapshot and append_id, CSV files, HTTP)
RERUN = {
    "public_security.resident",
    "public_security.household",
    "health.consultation",
    "hotline.ticket",
    "traffic_police.violation",
}


def test_rerunning_the_day_gives_the_same_objects(s3_lake, monkeypatch):
    before = s3_lake.objects()
    fs = s3_lake.fs()
    # a part left by an earlier attempt that wrote more files: the rerun must remove it
    resident = next(k for k in before if "/raw/public_security/resident/" in k and "data-" in k)
    stray = resident.replace("data-00000", "data-00009")
    fs.copy(resident, stray)
    assert (
        s3_lake.rows("raw", "public_security", "resident")
        > s3_lake.day1["public_security.resident"]["rows_landed"]
    )
    with api_server(s3_lake.home, monkeypatch):
        again, errors = run_day(1, only=RERUN)
    assert errors == {} and set(again) == RERUN
    after = s3_lake.objects()
    assert not fs.exists(stray)
    assert set(after) == set(before)  # the same keys: nothing doubled, nothing left over
    for key, etag in before.items():
        # manifests and the quality results carry the new attempt ids and times
        if "/quality/" not in key and not key.endswith("_manifest.json"):
            assert after[key] == etag, key  # the same bytes under the same name
    for name, result in again.items():
        system, dataset = name.split(".")
        first = s3_lake.day1[name]
        assert result["rows_landed"] == first["rows_landed"], name
        assert s3_lake.rows("raw", system, dataset) == first["rows_landed"], name
        assert s3_lake.rows("quarantine", system, dataset) == first["rows_quarantined"], name
        manifest = json.loads(
            fs.cat_file(result["partition"].removeprefix("s3://") + "/_manifest.json")
        )
        assert manifest["attempt_id"] == result["attempt_id"]  # the rerun committed last


def test_warehouse_reads_the_lake_through_s3fs(s3_lake):
    """dbt through etl.warehouse.run_dbt (the profile's warehouse_s3 target, the county's
    vars and environment) runs the staging layer: every dataset's source, the quality files
    and the incremental staging models read s3:// through s3fs registered in DuckDB. The
    layers above read DuckDB tables, not the lake; the full build and its tests over the local
    lake are tests/test_warehouse.py's (a full build here costs a minute more)."""
    from etl import warehouse

    database = s3_lake.home / "warehouse" / "s3-staging.duckdb"
    database.parent.mkdir(parents=True, exist_ok=True)
    result = warehouse.run_dbt(["run", "--select", "staging"], s3_lake.home, database=database)
    assert result.success, warehouse._summarise(result)[1]
    with duckdb.connect(str(database), read_only=True) as con:
        for name, landed in s3_lake.day1.items():
            system, dataset = name.split(".")
            staged = con.execute(
                f"select count(*) from staging.{warehouse.model_name(system, dataset)}"
            ).fetchone()[0]
            assert staged <= landed["rows_landed"], name
            assert (staged > 0) == (landed["rows_landed"] > 0), name
        residents = con.execute(
            "select count(*) from staging.stg_public_security__resident"
        ).fetchone()[0]
        scorecard = con.execute("select count(*) from staging.stg_quality__scorecard").fetchone()
    assert residents == s3_lake.rows("raw", "public_security", "resident")
    assert scorecard[0] > 0  # lake/quality/scorecard.parquet, read from the store
    # the windows a build lists for its plan and hands to dbt are those dbt lists itself
    listed = warehouse.lake_windows(s3_lake.where)
    with duckdb.connect(str(database), read_only=True) as con:
        by_dbt = con.execute("select system, dataset, window_id from _meta.lake_windows")
        assert set(listed) == set(by_dbt.fetchall())
    for (system, dataset, _), files in listed.items():
        landed = s3_lake.day1[f"{system}.{dataset}"]["rows_landed"]
        assert warehouse._holds_rows(s3_lake.where, files) == (landed > 0), files


def test_a_quiet_register_keeps_its_quarantine_in_the_store(s3_lake, tmp_path, monkeypatch):
    """The household register on PostgreSQL, its lake in the store: the night its database's
    digest is unchanged, the window reads nothing and copies the rows the first read
    quarantined from the store into its own quarantine window (etl.snapshot)."""
    require_server(5432, "PostgreSQL (the register's database)")
    from etl.simulate import simulate

    home = tmp_path / "data"
    home.mkdir()
    monkeypatch.setenv("COUNTYLAKE_HOME", str(home))
    monkeypatch.setenv(LAKE_URL_ENV, f"s3://{BUCKET}/registers")
    simulate(home, scale=SCALE, days=1, seed=7, target="postgres")
    only = {"public_security.household"}
    nights = []
    for n in (1, 2):
        results, errors = run_day(n, only)
        assert errors == {}
        nights.append(results["public_security.household"])
    first, quiet = nights
    assert first["rows_quarantined"] > 0
    assert (quiet["rows_read"], quiet["rows_landed"]) == (first["rows_read"], 0)
    assert quiet["rows_quarantined"] == first["rows_quarantined"]
    fs = s3_lake.fs()
    rows = {}
    for key in fs.find(f"{BUCKET}/registers/quarantine/public_security/household"):
        if key.endswith(".parquet"):
            with fs.open(key) as f:
                rows[key.split("/load_date=")[1][:10]] = pq.read_table(f).to_pylist()
    assert rows.keys() == {window(1)[0][:10], window(2)[0][:10]}
    assert rows[window(1)[0][:10]] == rows[window(2)[0][:10]]
    assert len(rows[window(2)[0][:10]]) == first["rows_quarantined"]


def test_warehouse_refuses_a_lake_no_target_reads(tmp_path):
    from etl import warehouse

    with pytest.raises(warehouse.WarehouseError, match="no dbt target reads a gs:// lake"):
        warehouse._lake_target(Paths(tmp_path, "gs://bucket/lake"))
    assert warehouse._lake_target(Paths(tmp_path)) == []
    assert warehouse._lake_target(Paths(tmp_path, LAKE_URL)) == ["--target", "warehouse_s3"]
