"""Export files dropped by departments: CSV (GBK/GB18030, UTF-8, with or without BOM) and Excel.

Each file is read whole into memory once: department exports are megabytes, and holding the
bytes lets us hash, detect the encoding and parse without reading twice. Every value is read as
text; typing happens in ``etl.validate`` so a bad cell costs one row, not the file.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.csv as pacsv

from etl.contracts import DatasetContract, SourceKind, SystemContract
from etl.errors import SourceError
from etl.sources.base import BadFile, Chunk, ReadPlan, ReadReport, columns_to_read

UTF8_FAMILY = {"utf-8", "utf-8-sig"}


def drop_folder(url: str) -> Path:
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else Path(url)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(name: str) -> str:
    return codecs.lookup(name).name


def decode(data: bytes, declared: list[str]) -> tuple[str, str]:
    """Return (text, encoding) using the first declared encoding that fits, or raise
    ValueError saying which encoding the file seems to be in."""
    names = [_canonical(n) for n in declared]
    if data.startswith(codecs.BOM_UTF8):
        if not UTF8_FAMILY & set(names):
            raise ValueError(f"file starts with a UTF-8 BOM but the contract declares {declared}")
        return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
    if not UTF8_FAMILY & set(names) and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise ValueError(f"file is UTF-8 but the contract declares {declared}")
    errors = []
    for name in names:
        try:
            return data.decode(name), name
        except UnicodeDecodeError as exc:
            errors.append(f"{name} fails at byte {exc.start}")
    raise ValueError(f"not decodable in the declared encodings: {'; '.join(errors)}")


class FileDropSource:
    """A folder of export files; new files are found by name and SHA-256 (see etl.extract)."""

    def __init__(self, system: SystemContract, dataset: DatasetContract, url: str):
        self.system, self.dataset = system, dataset
        self.folder = drop_folder(url)
        self.spec = dataset.files

    def describe(self) -> str:
        return f"{self.folder}/{self.spec.pattern}"

    def list_files(self) -> list[tuple[str, str]]:
        """(name, sha256) of every file in the drop folder matching the pattern, by name."""
        return [(path.name, sha256_of(path.read_bytes())) for path in self._exports()]

    def _exports(self) -> list[Path]:
        if not self.folder.is_dir():
            raise SourceError(
                str(self.folder),
                "export folder does not exist",
                "check the connection, or run `countylake simulate`",
            )
        return [
            path
            for path in sorted(self.folder.iterdir())
            if path.is_file() and fnmatch.fnmatch(path.name, self.spec.pattern)
        ]

    def probe(self, report: ReadReport) -> str:
        """The files in the drop, and the last by name parsed as a read would parse it
        (``countylake check --sources``)."""
        files = self._exports()
        if not files:
            return "no export file yet"
        path = files[-1]
        table, error = self._load(path, report)
        if error:
            raise SourceError(str(path), error, "fix or replace the export, or update the contract")
        count = f"{len(files)} files" if len(files) > 1 else "1 file"
        malformed = f", {len(report.bad_lines):,} malformed lines" if report.bad_lines else ""
        return (
            f"{count}; {path.name}: {table.num_rows:,} rows, {table.num_columns} columns{malformed}"
        )

    def read(self, plan: ReadPlan, report: ReadReport) -> Iterator[Chunk]:
        for name, _sha in plan.files:
            path = self.folder / name
            table, error = self._load(path, report)
            if error:
                report.bad_files.append(BadFile(str(path), error))
                continue
            row = 2  # line 1 is the header
            for batch in table.to_batches():
                if batch.num_rows:
                    yield Chunk(batch, name, row)
                    row += batch.num_rows

    def _load(self, path: Path, report: ReadReport) -> tuple[pa.Table | None, str | None]:
        """The file's columns that a read takes (the drift policy applied), or why it cannot
        be read."""
        try:
            table = self._parse(path, report)
        except (ValueError, OSError, pa.ArrowException) as exc:
            return None, _one_line(exc)
        columns, error = columns_to_read(self.dataset, table.column_names, report)
        if error:
            return None, error
        return table.select(columns), None

    def _parse(self, path: Path, report: ReadReport) -> pa.Table:
        if self.system.kind == SourceKind.EXCEL:
            return _read_excel(path, self.spec.sheet)
        text, encoding = decode(path.read_bytes(), self.spec.encodings)
        report.encodings[path.name] = encoding

        def malformed(row) -> str:
            report.bad_lines.append(
                {
                    "_origin": path.name,
                    "_row": row.number,
                    "_raw": row.text,
                    "reason": "parse:columns",
                    "detail": f"expected {row.expected_columns} fields, got {row.actual_columns}",
                }
            )
            return "skip"

        return pacsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=self.spec.delimiter, invalid_row_handler=malformed
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c.at_source: pa.string() for c in self.dataset.columns},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )


def _read_excel(path: Path, sheet: str | int) -> pa.Table:
    import fastexcel

    try:
        loaded = fastexcel.read_excel(path).load_sheet(sheet, dtypes="string")
    except Exception as exc:  # fastexcel raises its own error types for corrupt workbooks
        raise ValueError(f"not a readable Excel workbook: {_one_line(exc)}") from exc
    return pa.Table.from_batches([loaded.to_arrow()])


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
