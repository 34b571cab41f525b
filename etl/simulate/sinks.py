"""Where the simulated departments keep their data: SQL databases (SQLite, PostgreSQL, MariaDB),
export files (CSV in the contract's encoding, Excel workbooks) and the API's SQLite store."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from etl.contracts import DatasetContract, SystemContract

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"
MYSQL_DEFAULT = "mysql://root@127.0.0.1:3306"

SQL_TYPES = {
    "sqlite": {
        "string": "TEXT",
        "int": "INTEGER",
        "float": "REAL",
        "bool": "INTEGER",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "decimal": "DECIMAL(18,2)",
    },
    "postgres": {
        "string": "TEXT",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
        "date": "DATE",
        "timestamp": "TIMESTAMP",
        "decimal": "NUMERIC(18,2)",
    },
    "mariadb": {
        "string": "VARCHAR(255)",
        "int": "BIGINT",
        "float": "DOUBLE",
        "bool": "TINYINT(1)",
        "date": "DATE",
        "timestamp": "DATETIME",
        "decimal": "DECIMAL(18,2)",
    },
}


def rows_of(df: pd.DataFrame) -> list[tuple]:
    """Python tuples with None for nulls (numpy scalars converted to Python ones)."""
    cols = []
    for c in df.columns:
        series = df[c]
        kind = series.dtype.kind
        if series.dtype == object:
            values = series.to_numpy()  # the simulator writes None for nulls in text columns
            first = next((v for v in values if v is not None), None)
            if isinstance(first, (np.generic, float)):
                values = np.array([_plain(v) for v in values], dtype=object)
        elif kind == "f":
            arr = series.to_numpy()
            values = np.where(np.isnan(arr), None, arr.astype(object))
        elif kind in "iub":
            values = series.to_numpy().astype(object)
        else:
            values = series.to_numpy(dtype=object, na_value=None)
        cols.append(values.tolist())
    return list(zip(*cols, strict=True))


def _plain(value):
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def db_name(county_code: str, system: str) -> str:
    """``county_<code>_<system>``; ``COUNTYLAKE_SIM_DB_PREFIX`` replaces ``county`` so a
    benchmark's databases do not clash with the demo's or the tests'."""
    prefix = os.environ.get("COUNTYLAKE_SIM_DB_PREFIX", "county")
    return f"{prefix}_{county_code}_{system}"


class SqlSink:
    """One department database. ``reset`` drops and recreates it with the contract's tables."""

    def __init__(self, target: str, system: SystemContract, home: Path, county_code: str):
        self.target, self.system, self.home = target, system, home
        self.name = db_name(county_code, system.system)
        self.conn = None
        if target == "sqlite":
            url = system.embedded.format(home=home)
            self.path = Path(url.removeprefix("sqlite:///"))
            if not url.startswith("sqlite:///"):
                raise ValueError(f"{system.system}: embedded URL {url} is not sqlite:///")
            self.url = url
        elif target == "postgres":
            self.server = os.environ.get("COUNTYLAKE_SIM_PG_URL", PG_DEFAULT).rstrip("/")
            self.url = f"{self.server}/{self.name}"
        elif target == "mariadb":
            self.server = os.environ.get("COUNTYLAKE_SIM_MYSQL_URL", MYSQL_DEFAULT).rstrip("/")
            self.url = f"{self.server}/{self.name}"
        else:
            raise ValueError(f"unknown target {target!r} (sqlite, postgres, mariadb)")

    # ------------------------------------------------------------------ connections

    def _mysql(self, database: str | None):
        import pymysql

        u = urlsplit(self.server)
        return pymysql.connect(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=u.username or "root",
            password=u.password or "",
            database=database,
            charset="utf8mb4",
            autocommit=False,
            local_infile=False,
        )

    def open(self, fresh: bool) -> SqlSink:
        if self.target == "sqlite":
            if fresh and self.path.exists():
                self.path.unlink()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path)
            self.conn.execute("PRAGMA synchronous=OFF")  # a simulated source: speed first
        elif self.target == "postgres":
            import psycopg

            if fresh:
                with psycopg.connect(f"{self.server}/postgres", autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                    admin.execute(f'CREATE DATABASE "{self.name}"')
            self.conn = psycopg.connect(self.url)
        else:
            if fresh:
                admin = self._mysql(None)
                with admin.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
                    cur.execute(
                        f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                    )
                admin.commit()
                admin.close()
            self.conn = self._mysql(self.name)
        return self

    def close(self) -> None:
        if self.conn is not None:
            self.conn.commit()
            self.conn.close()
            self.conn = None

    def _q(self, name: str) -> str:
        return f"`{name}`" if self.target == "mariadb" else f'"{name}"'

    def create(self, dataset: DatasetContract) -> None:
        types = SQL_TYPES[self.target]
        cols = []
        for c in dataset.columns:
            decl = f"{self._q(c.at_source)} {types[c.type]}"
            if c.name in dataset.primary_key:
                decl += " NOT NULL"
            cols.append(decl)
        by_name = {c.name: c.at_source for c in dataset.columns}
        key = ", ".join(self._q(by_name[k]) for k in dataset.primary_key)
        cols.append(f"PRIMARY KEY ({key})")
        table = self._q(dataset.table)
        cur = self.conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} ({', '.join(cols)})")

    def index(self, dataset: DatasetContract) -> None:
        """Index the incremental column (after the bulk load of the base state)."""
        by_name = {c.name: c.at_source for c in dataset.columns}
        table, cur = self._q(dataset.table), self.conn.cursor()
        inc = dataset.incremental.column
        if inc and [inc] != dataset.primary_key:
            cur.execute(
                f"CREATE INDEX {self._q(f'ix_{dataset.table}_{inc}')} ON {table} "
                f"({self._q(by_name[inc])})"
            )

    def write(
        self,
        dataset: DatasetContract,
        upsert: pd.DataFrame | None,
        delete: Iterable | None,
        insert_only: bool = False,
    ) -> int:
        """Delete the given keys and the keys of the upserted rows, then insert the rows
        (``insert_only``: into a new, empty table)."""
        by_name = {c.name: c.at_source for c in dataset.columns}
        key_col = by_name[dataset.primary_key[0]]
        table, cur = self._q(dataset.table), self.conn.cursor()
        keys = list(delete or [])
        if upsert is not None and len(upsert):
            keys += upsert[dataset.primary_key[0]].tolist()
        if keys and len(dataset.primary_key) == 1 and not insert_only:
            self._delete(cur, table, self._q(key_col), keys)
        if upsert is None or not len(upsert):
            return 0
        if insert_only:  # B-tree friendly: insert in key order
            upsert = upsert.sort_values(dataset.primary_key, kind="stable")
        names = [by_name[c] for c in upsert.columns]
        rows = rows_of(upsert)
        collist = ", ".join(self._q(n) for n in names)
        if self.target == "sqlite":
            marks = ", ".join("?" * len(names))
            cur.executemany(f"INSERT INTO {table} ({collist}) VALUES ({marks})", rows)
        elif self.target == "postgres":
            with cur.copy(f"COPY {table} ({collist}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(names))
            sql = f"INSERT INTO {table} ({collist}) VALUES ({marks})"
            for i in range(0, len(rows), 5000):
                cur.executemany(sql, rows[i : i + 5000])
        return len(rows)

    def _delete(self, cur, table: str, key: str, keys: list) -> None:
        keys = list(dict.fromkeys(keys))
        if self.target == "sqlite":
            cur.executemany(f"DELETE FROM {table} WHERE {key} = ?", [(k,) for k in keys])
        elif self.target == "postgres":
            cur.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", (keys,))
        else:
            for i in range(0, len(keys), 5000):
                chunk = keys[i : i + 5000]
                marks = ", ".join(["%s"] * len(chunk))
                cur.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", chunk)


# --------------------------------------------------------------------------- export files


def export_dir(system: SystemContract, home: Path) -> Path:
    url = system.embedded.format(home=home)
    if not url.startswith("file://"):
        raise ValueError(f"{system.system}: embedded URL {url} is not file://")
    return Path(url.removeprefix("file://"))


def file_name(dataset: DatasetContract, day_yyyymmdd: str) -> str:
    return dataset.files.pattern.replace("*", day_yyyymmdd)


def _cell(value, col_type: str):
    if value is None:
        return None
    if col_type == "decimal":
        return round(float(value), 2)
    if col_type == "int" and not isinstance(value, str):
        return int(value)
    return value


def write_csv(path: Path, dataset: DatasetContract, df: pd.DataFrame) -> None:
    files = dataset.files
    types = [c.type for c in dataset.columns]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=files.delimiter, lineterminator="\r\n")
    w.writerow([c.at_source for c in dataset.columns])
    for row in rows_of(df[dataset.column_names]):
        w.writerow(
            [
                ""
                if v is None
                else (f"{v:.2f}" if t == "decimal" and not isinstance(v, str) else v)
                for v, t in zip(row, types, strict=True)
            ]
        )
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(buf.getvalue().encode(files.encodings[0]))
    tmp.replace(path)


def write_xlsx(path: Path, dataset: DatasetContract, df: pd.DataFrame, stamp: str) -> None:
    """Excel workbook (openpyxl write-only), normalised so the same rows give the same bytes:
    fixed document times and zip entry times (``stamp`` is 'YYYY-MM-DD HH:MM:SS')."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(dataset.files.sheet if isinstance(dataset.files.sheet, str) else "Sheet1")
    types = [c.type for c in dataset.columns]
    ws.append([c.at_source for c in dataset.columns])
    for row in rows_of(df[dataset.column_names]):
        ws.append([_cell(v, t) for v, t in zip(row, types, strict=True)])
    raw = io.BytesIO()
    wb.save(raw)
    iso = stamp.replace(" ", "T") + "Z"
    y, mo, d = int(stamp[:4]), int(stamp[5:7]), int(stamp[8:10])
    hh, mi, ss = int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*",
                    lambda m: m.group(1) + iso.encode(),
                    data,
                )
            zi = zipfile.ZipInfo(info.filename, date_time=(y, mo, d, hh, mi, ss))
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, data)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(out.getvalue())
    tmp.replace(path)


def reset_dir(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- API store


def api_db_path(home: Path, system: SystemContract) -> Path:
    return home / "sources" / system.system / "api.db"


class ApiStore:
    """The department API's own database: one SQLite table per dataset, pinyin column names,
    no primary key (the API system really holds duplicate rows)."""

    def __init__(self, path: Path, fresh: bool):
        if fresh and path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path)

    def create(self, dataset: DatasetContract, table: str) -> None:
        types = SQL_TYPES["sqlite"]
        cols = ", ".join(f'"{c.at_source}" {types[c.type]}' for c in dataset.columns)
        self.conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        self.conn.execute(f'CREATE TABLE "{table}" ({cols})')
        inc = {c.name: c.at_source for c in dataset.columns}[dataset.incremental.column]
        self.conn.execute(f'CREATE INDEX "ix_{table}_{inc}" ON "{table}" ("{inc}")')

    def write(self, dataset: DatasetContract, table: str, df: pd.DataFrame, delete: list) -> int:
        key = {c.name: c.at_source for c in dataset.columns}[dataset.primary_key[0]]
        self.conn.executemany(
            f'DELETE FROM "{table}" WHERE "{key}" = ?', [(k,) for k in dict.fromkeys(delete)]
        )
        names = [c.at_source for c in dataset.columns]
        marks = ", ".join("?" * len(names))
        collist = ", ".join(f'"{n}"' for n in names)
        rows = rows_of(df[names])
        self.conn.executemany(f'INSERT INTO "{table}" ({collist}) VALUES ({marks})', rows)
        return len(rows)

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()
