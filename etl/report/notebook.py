"""What the analyst notebooks (``notebooks/``) start with: the warehouse opened read-only under
the data root, and matplotlib drawing Chinese with the project's CJK font.

    from etl.report.notebook import connect, setup
    setup()
    con = connect()          # COUNTYLAKE_HOME, else ./data (from the repository root)
    con.sql("select * from marts.mart_population__by_town").df()
"""

from __future__ import annotations

import os
from pathlib import Path

from etl.contracts import REPO_ROOT
from etl.settings import paths


def home() -> Path:
    """The data root: ``COUNTYLAKE_HOME``, else the repository's ``data/`` (the demo's)."""
    if os.environ.get("COUNTYLAKE_HOME"):
        return paths().home
    return paths(REPO_ROOT / "data").home


def connect():
    """The county warehouse, read-only: a notebook never blocks or sees half a build."""
    import duckdb

    path = home() / "warehouse" / "county.duckdb"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no warehouse yet; run `make demo` or set COUNTYLAKE_HOME")
    return duckdb.connect(str(path), read_only=True)


def setup() -> str:
    """Charts in Chinese (the CJK font), inline-friendly sizes; returns the font family."""
    import matplotlib.pyplot as plt

    from etl.report.fonts import use_in_matplotlib

    family = use_in_matplotlib()
    plt.rcParams["figure.figsize"] = (9, 4.5)
    plt.rcParams["figure.dpi"] = 100
    return family
