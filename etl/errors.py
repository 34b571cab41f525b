"""Error types that carry where the problem is and why; the CLI prints them as one line."""

from __future__ import annotations


class CountylakeError(Exception):
    """Base: ``location`` names the file, table, URL or row; ``reason`` says what is wrong."""

    def __init__(self, location: str, reason: str, hint: str = ""):
        self.location, self.reason, self.hint = location, reason, hint
        text = f"{location}: {reason}"
        super().__init__(f"{text} ({hint})" if hint else text)


class SourceError(CountylakeError):
    """A department system cannot be read: down, unreadable, or not what its contract says."""


class ReconciliationError(CountylakeError):
    """Counts do not add up: rows read != rows landed + quarantined (+ unchanged)."""
