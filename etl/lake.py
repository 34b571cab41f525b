"""The lake's storage: the local folder by default, or any fsspec URL (an S3-compatible store).

``COUNTYLAKE_LAKE_URL`` (see ``etl.settings``) names the lake's root, for example
``s3://county-lake/gaoqing/lake``. The S3 endpoint and credentials are never in the URL nor in
git: s3fs takes them from botocore's usual chain, that is the environment
(``AWS_ENDPOINT_URL`` — MinIO's or a cloud's S3 API —, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), ``AWS_CONFIG_FILE`` /
``AWS_SHARED_CREDENTIALS_FILE`` (where the addressing style goes, ``s3 = addressing_style =
virtual`` for stores that refuse path-style requests), or the machine's role.

Writers (``etl.land``, ``etl.quality``) go through ``filesystem()``; DuckDB readers call
``register()`` on their connection, which hands DuckDB the same fsspec filesystem: DuckDB 2.0
cannot install its httpfs extension without the internet, and an fsspec filesystem needs no
extension. The warehouse does the same through dbt-duckdb's ``filesystems:`` profile setting
(``warehouse/profiles.yml``). With the local lake none of this runs: files are written and
read as plain paths, as before.
"""

from __future__ import annotations

from pathlib import Path

from etl.errors import CountylakeError
from etl.settings import Paths

# s3fs caches directory listings for the life of the process; a long-lived worker would then
# miss windows another process landed. The lake is listed rarely (one glob per dataset per
# build), so listings are always asked afresh.
STORAGE_OPTIONS = {"s3": {"use_listings_cache": False}, "s3a": {"use_listings_cache": False}}


def protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def filesystem(where: Paths):
    """The lake's fsspec filesystem and its root path (without the protocol for object stores:
    fsspec's own path form, ``bucket/prefix``)."""
    import fsspec

    if not where.lake_remote:
        return fsspec.filesystem("file"), str(where.lake)
    url = where.lake_root
    try:
        fs, root = fsspec.core.url_to_fs(url, **STORAGE_OPTIONS.get(protocol(url), {}))
    except ImportError as exc:  # s3fs (or gcsfs, ...) missing
        raise CountylakeError(url, f"no fsspec filesystem for this lake URL: {exc}") from exc
    return fs, root.rstrip("/")


def location(where: Paths, relative: str) -> str:
    """A path under the lake as readers name it (``/…/lake/raw/…`` or ``s3://…/raw/…``)."""
    return f"{where.lake_root}/{relative.strip('/')}"


def register(con, where: Paths) -> None:
    """Let a DuckDB connection read the lake's URLs (nothing to do for a local lake)."""
    if where.lake_remote:
        fs, _ = filesystem(where)
        con.register_filesystem(fs)


def upload(fs, local: Path, key: str) -> None:
    """One local file to ``key``: a single PUT, so a reader sees the old object or the new one."""
    fs.put_file(str(local), key)


def remove_tree(fs, key: str) -> None:
    if fs.exists(key):
        fs.rm(key, recursive=True)


def local_files(items: list[Path]) -> list[tuple[Path, str]]:
    """Files and folders to publish as (local file, name relative to the window), sorted."""
    found = []
    for item in items:
        if item.is_dir():
            for f in item.rglob("*"):
                if f.is_file():
                    found.append((f, f"{item.name}/{f.relative_to(item).as_posix()}"))
        else:
            found.append((item, item.name))
    return sorted(found, key=lambda pair: pair[1])
