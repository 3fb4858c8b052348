"""Tap events and the rider's card.

A tap is what a gate reads from a card: the gate, its station, the card (the rider's wallet
id), the direction, the time, the card's tap counter and what the card itself records (the
entry of its open journey, what is left of its offline allowance), all signed by the card with
the rider's wallet key (the key the ledger has registered for the wallet). Its 32-byte
:attr:`Tap.tap_id` (SHA-256 of the signed fields) is how a repeated tap is recognised.

>>> import tongbao as tb
>>> card = Card.new(wallet_id=5001, seed=b"doc")
>>> tap = card.tap(gate=7, station=3, direction=Direction.IN, time_ms=1_000)
>>> tap.verify(card.scheme, card.public_key)
True
>>> Tap.decode(tap.encode()) == tap
True
>>> card.tap(gate=7, station=3, direction=Direction.IN, time_ms=1_000).tap_id == tap.tap_id
False
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum

from tongbao import _core
from tongbao.errors import InvalidArgument
from tongbao.types import Scheme

#: Magic of a tap's signed bytes (also the domain separator of the card's signature).
TAP_MAGIC = b"tb-tap1\x00"
_TAP = struct.Struct("<8sQIQBQIiQQ")
#: Length of an encoded tap: the signed fields, then a 64-byte signature.
TAP_LEN = _TAP.size + 64
#: ``entry_station`` of a card with no open journey.
NO_ENTRY = -1


class Direction(IntEnum):
    """Which way the rider goes through the gate."""

    IN = 1
    OUT = 2


@dataclass(frozen=True)
class Tap:
    """One signed tap event (see the module docstring). ``entry_station`` / ``entry_ms``: the
    open journey the card records (``NO_ENTRY`` / 0 for none); ``allowance_left_fen``: what the
    card says is left of its offline allowance."""

    gate: int
    station: int
    card: int
    direction: Direction
    time_ms: int
    counter: int
    entry_station: int = NO_ENTRY
    entry_ms: int = 0
    allowance_left_fen: int = 0
    signature: bytes = b"\x00" * 64

    def message(self) -> bytes:
        """The signed bytes."""
        return _TAP.pack(
            TAP_MAGIC,
            self.gate,
            self.station,
            self.card,
            int(self.direction),
            self.time_ms,
            self.counter,
            self.entry_station,
            self.entry_ms,
            self.allowance_left_fen,
        )

    @functools.cached_property
    def tap_id(self) -> bytes:
        """SHA-256 of the signed bytes: the identity of this tap."""
        return hashlib.sha256(self.message()).digest()

    def encode(self) -> bytes:
        """The wire form: signed bytes then the signature (:data:`TAP_LEN` bytes)."""
        return self.message() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Tap:
        """Read the wire form. Raises ``InvalidArgument`` naming what is wrong."""
        if len(data) != TAP_LEN:
            raise InvalidArgument(f"a tap is {TAP_LEN} bytes, got {len(data)}")
        magic, gate, station, card, direction, time_ms, counter, entry, entry_ms, left = (
            _TAP.unpack(data[: _TAP.size])
        )
        if magic != TAP_MAGIC:
            raise InvalidArgument("not a tap (bad magic)")
        if direction not in (1, 2):
            raise InvalidArgument(f"tap direction: expected 1 (in) or 2 (out), got {direction}")
        return cls(
            gate,
            station,
            card,
            Direction(direction),
            time_ms,
            counter,
            entry,
            entry_ms,
            left,
            data[_TAP.size :],
        )

    def verify(self, scheme: int, public_key: bytes) -> bool:
        """Whether the signature is the card's (one check; gates and the engine batch theirs)."""
        return _core.verify_signature(int(scheme), public_key, self.message(), self.signature)


@dataclass
class Card:
    """A rider's card or phone wallet: the wallet's secret key, the tap counter and what the
    card writes down about itself (open journey, offline allowance). For simulations and tests;
    ``secret`` never leaves the card except into a test's :class:`tongbao.Keyring`."""

    wallet_id: int
    scheme: Scheme
    secret: bytes = field(repr=False)
    public_key: bytes
    counter: int = 0
    entry_station: int = NO_ENTRY
    entry_ms: int = 0
    allowance_left_fen: int = 0
    #: Whether the open journey was entered on the offline allowance (an offline gate).
    entry_offline: bool = False

    @classmethod
    def new(cls, wallet_id: int, seed: bytes, scheme: Scheme = Scheme.ED25519) -> Card:
        """A card with a secret key derived from ``seed`` and the wallet id."""
        secret = hashlib.sha256(b"tongbao-card" + seed + wallet_id.to_bytes(8, "little")).digest()
        public = _core.public_key_from_secret(int(scheme), secret)
        return cls(wallet_id, scheme, secret, public)

    def tap(self, gate: int, station: int, direction: Direction, time_ms: int) -> Tap:
        """Sign a tap now (the counter goes up by one)."""
        self.counter += 1
        unsigned = Tap(
            gate,
            station,
            self.wallet_id,
            direction,
            time_ms,
            self.counter,
            self.entry_station if direction == Direction.OUT else NO_ENTRY,
            self.entry_ms if direction == Direction.OUT else 0,
            self.allowance_left_fen,
        )
        signature = _core.sign_message(int(self.scheme), self.secret, unsigned.message())
        return replace(unsigned, signature=signature)

    def enter(self, station: int, time_ms: int) -> None:
        """What a gate writes on the card when it lets the rider in."""
        self.entry_station, self.entry_ms = station, time_ms

    def leave(self, allowance_used_fen: int = 0) -> None:
        """What a gate writes on the card when it lets the rider out."""
        self.entry_station, self.entry_ms, self.entry_offline = NO_ENTRY, 0, False
        self.allowance_left_fen -= allowance_used_fen
