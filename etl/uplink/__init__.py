"""Uplinks: scheduled, signed, exactly-once delivery of the county's shared resources to the
city and province data-sharing exchanges, with receipts.

Stages, one module each:

- ``masks``: what leaves for an exchange: each column unmasked only up to the grade the exchange
  is entitled to for the resource's share type, else masked (the warehouse's masks, in Python)
  or dropped;
- ``changes``: the outgoing rows of a resource, read from the warehouse read-only, and their
  difference (I/U/D) from the last snapshot the exchange accepted;
- ``package``: a package (data file(s), manifest with counts, schema and SHA-256, HMAC signature);
- ``transports``: 前置库 (front-end database), file package into an outbox, signed HTTP push;
- ``receivers``: the reference receiver of each transport (the city's or province's side);
- ``state``: the uplink ledger (packages, attempts, receipts, rejected rows, accepted digests);
- ``deliver``: the delivery protocol (build once, send with retries, reconcile receipts);
- ``catalogue``: the resource catalogue (政务信息资源目录) in JSON, CSV and HTML.

Only ``deliver_all`` is exported here; modules import their heavy libraries themselves.
"""

from __future__ import annotations


def deliver_all(where=None, progress=print) -> list[dict]:
    """Deliver every enabled exchange's resources through the reference receivers (the demo)."""
    from etl.uplink.deliver import deliver_all as run

    return run(where=where, progress=progress)
