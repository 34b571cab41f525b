"""The CJK font the reports draw with, for charts (matplotlib), pages and the PDF.

Noto Sans CJK SC (SIL Open Font License) is installed by ``make venv`` as a file of the PyPI
package ``mplfonts`` (pinned in pyproject.toml), so no system font package is needed. The file is
located without importing that package (its import configures matplotlib). A county may point
``COUNTYLAKE_CJK_FONT`` at another OTF/TTF/TTC with the Chinese glyphs it prints.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from etl.errors import CountylakeError

FONT_ENV = "COUNTYLAKE_CJK_FONT"
PACKAGED_FONT = ("mplfonts", "fonts/NotoSansCJKsc-Regular.otf")
# Debian's fonts-noto-cjk and fonts-wqy-microhei, in case the package is not installed.
SYSTEM_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)


class FontError(CountylakeError):
    """No font with the Chinese glyphs the reports need."""


def font_path() -> Path:
    """The CJK font file: ``COUNTYLAKE_CJK_FONT``, else the packaged Noto Sans CJK SC."""
    given = os.environ.get(FONT_ENV)
    if given:
        if not Path(given).is_file():
            raise FontError(FONT_ENV, f"{given} is not a font file")
        return Path(given)
    spec = importlib.util.find_spec(PACKAGED_FONT[0])
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / PACKAGED_FONT[1]
        if candidate.is_file():
            return candidate
    for candidate in map(Path, SYSTEM_FONTS):
        if candidate.is_file():
            return candidate
    raise FontError(
        "CJK font",
        f"neither the package {PACKAGED_FONT[0]} nor {', '.join(SYSTEM_FONTS)} is installed; "
        f"run `make venv` or set {FONT_ENV}",
    )


@lru_cache(maxsize=4)
def _coverage(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    font = TTFont(path, lazy=True, fontNumber=0)
    try:
        return frozenset(font.getBestCmap())
    finally:
        font.close()


def coverage(path: Path | None = None) -> frozenset[int]:
    """The code points the font has glyphs for."""
    return _coverage(str(path or font_path()))


def missing_glyphs(text: str, path: Path | None = None) -> list[str]:
    """The characters of ``text`` (whitespace and controls aside) the font cannot draw."""
    have = coverage(path)
    return sorted(
        {ch for ch in text if ord(ch) >= 0x20 and not ch.isspace()} - {chr(c) for c in have}
    )


@lru_cache(maxsize=1)
def use_in_matplotlib() -> str:
    """Register the CJK font with matplotlib and make it the default; returns its family name."""
    from matplotlib import font_manager, rcParams

    path = font_path()
    font_manager.fontManager.addfont(str(path))
    family = font_manager.FontProperties(fname=str(path)).get_name()
    rcParams["font.family"] = "sans-serif"
    rcParams["font.sans-serif"] = [family, *rcParams["font.sans-serif"]]
    rcParams["axes.unicode_minus"] = False  # the ASCII hyphen, not U+2212
    rcParams["svg.fonttype"] = "path"  # charts carry their glyphs: no font needed to view them
    return family
