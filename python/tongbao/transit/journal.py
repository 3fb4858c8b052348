"""Append-only, fsynced files that make transit crash-safe (``docs/transit.md``, "Crashes").

* :class:`Journal`: the engine's write-ahead journal. Before a batch of taps settles, the taps,
  the batch time and every ledger-state-dependent transaction built for them (the LOCKs, which
  pick the rider's free tokens, and the rest payments of reconciliation) are appended and
  fsynced; after it settles, its statuses are appended (no fsync: a lost ``done`` record only
  means the batch is resubmitted on recovery, and the ledger answers ``ALREADY_SETTLED``).
  Replaying the journal over the recovered ledger rebuilds the engine's journeys, decided taps
  and daily-cap counters exactly, and never builds a LOCK twice for the same tap-in.
* :class:`TapQueue`: an offline gate's queue; a tap is appended and fsynced before the gate
  opens, so a gate killed after letting a rider through still has the tap.

A torn last line (the process died while writing it) was never acknowledged and is dropped.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "j")
>>> j = Journal(path)
>>> j.append({"op": "taps", "seq": 0}, sync=True)
>>> with open(path, "a") as f:
...     _ = f.write('{"op": "do')  # a torn tail
>>> Journal(path).records
[{'op': 'taps', 'seq': 0}]
"""

from __future__ import annotations

import json
import os
from typing import Any


def _read_lines(path: str) -> tuple[list[str], int]:
    """Complete lines of the file and the byte length they cover (a torn tail is excluded)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    return data[:end].decode().splitlines(), end


class Journal:
    """The engine's write-ahead journal at ``path`` (created if missing; see the module
    docstring). ``records`` holds what was in the file when opened."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        lines, end = _read_lines(self.path)
        self.records: list[dict[str, Any]] = [json.loads(line) for line in lines if line]
        self._f = open(self.path, "ab")  # noqa: SIM115 - held open for appends
        if self._f.tell() != end:
            self._f.truncate(end)
            self._f.seek(end)

    def append(self, record: dict[str, Any], *, sync: bool) -> None:
        """Append one record; ``sync``: fsync before returning."""
        self._f.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())

    def close(self) -> None:
        """Close the file."""
        self._f.close()


class TapQueue:
    """An offline gate's durable queue of encoded taps at ``path`` (fixed-length records).

    >>> import tempfile, os
    >>> q = TapQueue(os.path.join(tempfile.mkdtemp(), "q"), record_len=4)
    >>> q.append(b"abcd"); q.append(b"efgh")
    >>> TapQueue(q.path, record_len=4).load()
    [b'abcd', b'efgh']
    """

    def __init__(self, path: str | os.PathLike[str], record_len: int) -> None:
        self.path = os.fspath(path)
        self.record_len = record_len
        self._f = open(self.path, "ab")  # noqa: SIM115 - held open for appends
        size = self._f.tell()
        whole = size - size % record_len
        if whole != size:  # a torn record: the gate never opened for it
            self._f.truncate(whole)
            self._f.seek(whole)

    def load(self) -> list[bytes]:
        """Every whole record in the file, in order."""
        with open(self.path, "rb") as f:
            data = f.read()
        n = self.record_len
        return [data[i : i + n] for i in range(0, len(data) - len(data) % n, n)]

    def append(self, record: bytes) -> None:
        """Append one record and fsync it."""
        if len(record) != self.record_len:
            raise ValueError(f"a queue record is {self.record_len} bytes, got {len(record)}")
        self._f.write(record)
        self._f.flush()
        os.fsync(self._f.fileno())
