"""Screenshots of the report pages in headless Chromium (Debian's ``chromium`` package, which
``make test`` installs): what a reader's browser shows, checked by the tests and available as
``countylake report --screenshots``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from etl.errors import CountylakeError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser() -> str | None:
    """The headless browser on PATH, if any."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600) -> Path:
    """Render ``page`` at ``width`` x ``height`` CSS pixels into ``png``."""
    exe = browser()
    if exe is None:
        raise CountylakeError("screenshot", f"no headless browser ({', '.join(BROWSERS)}) on PATH")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="countylake-chromium-") as profile:
        done = subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",  # runs as root in CI
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    if not png.exists():
        raise CountylakeError(f"screenshot of {page}", done.stderr.strip()[-500:] or "no image")
    return png


def screenshots(pages: dict[str, Path], folder: Path) -> dict[str, Path]:
    """One PNG per page (HTML only), named after the page's key."""
    return {
        name: screenshot(path, folder / f"{name}.png")
        for name, path in pages.items()
        if path.suffix == ".html"
    }
