"""A naive pure-Python UTXO ledger: the baseline the tongbao engine is benchmarked against.

It is deliberately the straightforward design one would write first, done honestly:

* transactions arrive as bytes in a small binary format and are decoded with ``struct``
  (tongbao's ``Ledger.settle`` also starts from bytes);
* state is a ``dict`` of unspent tokens ``token_id -> (owner, value_fen)`` plus sets of spent
  tokens and settled transaction ids;
* every input carries its own Ed25519 signature by the input's owner over the transaction id,
  checked with the ``cryptography`` package (OpenSSL, C) or, with ``backend="pynacl"``, PyNaCl
  (libsodium, C), one verify per input;
* one thread, transactions applied in batch order, the first wins a conflict.

It answers the same statuses as tongbao (:class:`tongbao.Status`) for the checks it has, in the
same order: ``MALFORMED``, ``ALREADY_SETTLED``, ``DUPLICATE_INPUT``, ``ZERO_VALUE_OUTPUT``,
``UNKNOWN_WALLET`` (output owner), ``UNKNOWN_INPUT``, ``INPUT_SPENT``, ``MISSING_SIGNATURE``
(too few signatures), ``BAD_SIGNATURE``, ``VALUE_MISMATCH``. There is no expiry, issuing or
redemption: money enters with :meth:`NaiveLedger.mint`. For a 1-input transfer it does the same
cryptographic work as tongbao (one signature check per transaction).

Run ``python -m tongbao.naive`` for its self-check. Needs the ``cryptography`` package (and PyNaCl
for ``backend="pynacl"``): ``pip install tongbao[bench]``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tongbao import Status

_HEADER = struct.Struct("<QBB")  # timestamp_ms, input count, output count
_OUTPUT = struct.Struct("<QQ")  # owner, amount_fen
ID_LEN = 32
SIG_LEN = 64
U64_MAX = 2**64 - 1


def encode(inputs: Sequence[bytes], outputs: Sequence[tuple[int, int]], timestamp_ms: int) -> bytes:
    """The unsigned body of a transfer."""
    parts = [_HEADER.pack(timestamp_ms, len(inputs), len(outputs)), *inputs]
    parts += [_OUTPUT.pack(owner, amount) for owner, amount in outputs]
    return b"".join(parts)


def token_id(tx_id: bytes, index: int) -> bytes:
    """The id of output ``index`` of transaction ``tx_id``."""
    return hashlib.sha256(tx_id + index.to_bytes(2, "little")).digest()


def decode(raw: bytes) -> tuple[bytes, list[bytes], list[tuple[int, int]], list[bytes]]:
    """``(tx_id, inputs, outputs, signatures)``; raises ``ValueError`` when malformed."""
    if len(raw) < _HEADER.size:
        raise ValueError("truncated header")
    _, n_in, n_out = _HEADER.unpack_from(raw, 0)
    body_len = _HEADER.size + n_in * ID_LEN + n_out * _OUTPUT.size
    if n_in == 0 or n_out == 0 or len(raw) != body_len + n_in * SIG_LEN:
        raise ValueError("bad shape or length")
    pos = _HEADER.size
    inputs = [raw[pos + i * ID_LEN : pos + (i + 1) * ID_LEN] for i in range(n_in)]
    pos += n_in * ID_LEN
    outputs = [_OUTPUT.unpack_from(raw, pos + i * _OUTPUT.size) for i in range(n_out)]
    pos += n_out * _OUTPUT.size
    sigs = [raw[pos + i * SIG_LEN : pos + (i + 1) * SIG_LEN] for i in range(n_in)]
    tx_id = hashlib.sha256(raw[:body_len]).digest()
    return tx_id, inputs, outputs, sigs


class Wallets:
    """Client side: deterministic Ed25519 keys by wallet id, and signing."""

    def __init__(self, wallet_ids: Iterable[int], seed: bytes = b"naive") -> None:
        self.keys: dict[int, Ed25519PrivateKey] = {
            w: Ed25519PrivateKey.from_private_bytes(
                hashlib.sha256(seed + w.to_bytes(8, "little")).digest()
            )
            for w in wallet_ids
        }

    def public_key(self, wallet_id: int) -> bytes:
        """The raw 32-byte public key."""
        return self.keys[wallet_id].public_key().public_bytes_raw()

    def transfer(
        self,
        inputs: Sequence[tuple[bytes, int]],
        outputs: Sequence[tuple[int, int]],
        timestamp_ms: int,
    ) -> bytes:
        """A signed transfer; ``inputs`` are ``(token_id, owner)``, each signed by its owner."""
        body = encode([t for t, _ in inputs], outputs, timestamp_ms)
        tx_id = hashlib.sha256(body).digest()
        return body + b"".join(self.keys[owner].sign(tx_id) for _, owner in inputs)


#: A parsed public key's check: ``verify(signature, message)`` is True for a valid signature.
Verify = Callable[[bytes, bytes], bool]

#: The signature libraries the baseline can use.
BACKENDS = ("cryptography", "pynacl")


def _cryptography_verifier(public_key: bytes) -> Verify:
    key = Ed25519PublicKey.from_public_bytes(public_key)

    def verify(signature: bytes, message: bytes) -> bool:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def _pynacl_verifier(public_key: bytes) -> Verify:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    key = VerifyKey(public_key)

    def verify(signature: bytes, message: bytes) -> bool:
        try:
            key.verify(message, signature)
        except BadSignatureError:
            return False
        return True

    return verify


class NaiveLedger:
    """The ledger: wallets, unspent tokens, spent tokens, settled ids. ``backend`` picks the
    Ed25519 library (:data:`BACKENDS`); PyNaCl is imported only when asked for."""

    def __init__(self, verify_signatures: bool = True, backend: str = "cryptography") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend is one of {BACKENDS}, got {backend!r}")
        self.verify_signatures = verify_signatures
        self._parse_key = _cryptography_verifier if backend == "cryptography" else _pynacl_verifier
        self.wallets: dict[int, Verify] = {}
        self.unspent: dict[bytes, tuple[int, int]] = {}
        self.spent: set[bytes] = set()
        self.settled: set[bytes] = set()
        self.minted_fen = 0
        self._mints = 0

    def register(self, wallet_id: int, public_key: bytes) -> None:
        """Register a wallet's raw Ed25519 public key."""
        if wallet_id in self.wallets:
            raise ValueError(f"wallet {wallet_id} registered already")
        self.wallets[wallet_id] = self._parse_key(public_key)

    def mint(self, owner: int, amount_fen: int) -> bytes:
        """Create a token out of nothing (the baseline has no issue transactions)."""
        if owner not in self.wallets or not 0 < amount_fen <= U64_MAX:
            raise ValueError("bad mint")
        self._mints += 1
        tid = hashlib.sha256(b"mint" + self._mints.to_bytes(8, "little")).digest()
        self.unspent[tid] = (owner, amount_fen)
        self.minted_fen += amount_fen
        return tid

    def settle(self, batch: Sequence[bytes]) -> list[Status]:
        """Check and apply each transaction in order; one status each."""
        return [self._settle_one(raw) for raw in batch]

    def _settle_one(self, raw: bytes) -> Status:
        try:
            tx_id, inputs, outputs, sigs = decode(raw)
        except ValueError:
            return Status.MALFORMED
        if tx_id in self.settled:
            return Status.ALREADY_SETTLED
        if len(set(inputs)) != len(inputs):
            return Status.DUPLICATE_INPUT
        if any(amount == 0 for _, amount in outputs):
            return Status.ZERO_VALUE_OUTPUT
        out_sum = sum(amount for _, amount in outputs)
        if out_sum > U64_MAX:
            return Status.VALUE_OVERFLOW
        if any(owner not in self.wallets for owner, _ in outputs):
            return Status.UNKNOWN_WALLET
        in_sum = 0
        owners = []
        for tid in inputs:
            record = self.unspent.get(tid)
            if record is None:
                return Status.INPUT_SPENT if tid in self.spent else Status.UNKNOWN_INPUT
            owners.append(record[0])
            in_sum += record[1]
        if len(sigs) < len(inputs):
            return Status.MISSING_SIGNATURE
        if self.verify_signatures:
            for owner, sig in zip(owners, sigs, strict=True):
                if not self.wallets[owner](sig, tx_id):
                    return Status.BAD_SIGNATURE
        if in_sum != out_sum:
            return Status.VALUE_MISMATCH
        for tid in inputs:
            del self.unspent[tid]
            self.spent.add(tid)
        for index, (owner, amount) in enumerate(outputs):
            self.unspent[token_id(tx_id, index)] = (owner, amount)
        self.settled.add(tx_id)
        return Status.OK

    def balance(self, wallet_id: int) -> int:
        """Sum of the wallet's unspent tokens, in fen (O(tokens))."""
        return sum(v for owner, v in self.unspent.values() if owner == wallet_id)

    def check_invariants(self) -> None:
        """Value is conserved: unspent tokens sum to what was minted; spent and unspent are
        disjoint. Raises ``AssertionError``."""
        total = sum(v for _, v in self.unspent.values())
        if total != self.minted_fen:
            raise AssertionError(f"unspent {total} fen != minted {self.minted_fen} fen")
        if not self.spent.isdisjoint(self.unspent):
            raise AssertionError("a token is both spent and unspent")


def self_check(backend: str = "cryptography") -> None:
    """Exercise every status the baseline answers; raises ``AssertionError`` on a wrong one.

    >>> self_check()
    """
    alice, bob, carol, mallory = 1, 2, 3, 4
    wallets = Wallets([alice, bob, carol, mallory])
    ledger = NaiveLedger(backend=backend)
    for w in (alice, bob, carol):
        ledger.register(w, wallets.public_key(w))
    a1 = ledger.mint(alice, 10_000)
    a2 = ledger.mint(alice, 5_000)
    b1 = ledger.mint(bob, 2_000)

    pay = wallets.transfer([(a1, alice)], [(bob, 3_000), (alice, 7_000)], 1)  # 1-in/2-out
    pay2 = wallets.transfer(
        [(a2, alice), (b1, bob)], [(carol, 6_000), (bob, 1_000)], 2
    )  # 2-in/2-out, two owners sign
    double = wallets.transfer([(a1, alice)], [(carol, 10_000)], 3)
    no_outputs = wallets.transfer([(a1, alice)], [], 4)
    cases: list[tuple[bytes, Status]] = [
        (pay, Status.OK),
        (pay, Status.ALREADY_SETTLED),
        (double, Status.INPUT_SPENT),
        (pay2, Status.OK),
        (b"\x00" * 5, Status.MALFORMED),
        (no_outputs, Status.MALFORMED),
    ]
    change = token_id(decode(pay)[0], 1)  # alice's 7,000 change
    bob_tok = token_id(decode(pay)[0], 0)  # bob's 3,000
    cases += [
        (wallets.transfer([(change, alice), (change, alice)], [(bob, 14_000)], 5),
         Status.DUPLICATE_INPUT),
        (wallets.transfer([(change, alice)], [(bob, 7_000), (alice, 0)], 5),
         Status.ZERO_VALUE_OUTPUT),
        (wallets.transfer([(change, alice)], [(99, 7_000)], 5), Status.UNKNOWN_WALLET),
        (wallets.transfer([(b"\x01" * 32, alice)], [(bob, 1)], 5), Status.UNKNOWN_INPUT),
        (wallets.transfer([(change, mallory)], [(carol, 7_000)], 5),
         Status.BAD_SIGNATURE),  # alice's token signed with mallory's key
        (encode([change], [(bob, 7_000)], 5), Status.MALFORMED),  # unsigned: wrong length
        (wallets.transfer([(change, alice)], [(bob, 6_999)], 5), Status.VALUE_MISMATCH),
        (wallets.transfer([(change, alice), (bob_tok, bob)], [(carol, 10_000)], 6), Status.OK),
    ]  # fmt: skip
    got = ledger.settle([raw for raw, _ in cases])
    want = [status for _, status in cases]
    assert got == want, list(zip(got, want, strict=True))
    ledger.check_invariants()
    assert ledger.balance(alice) == 0
    assert ledger.balance(bob) == 1_000
    assert ledger.balance(carol) == 16_000
    assert ledger.minted_fen == 17_000
    # With signature checks off a forged signature passes: that is what "off" means.
    unchecked = NaiveLedger(verify_signatures=False)
    unchecked.register(alice, wallets.public_key(alice))
    unchecked.register(bob, wallets.public_key(bob))
    t = unchecked.mint(alice, 100)
    assert unchecked.settle([wallets.transfer([(t, bob)], [(bob, 100)], 1)]) == [Status.OK]


if __name__ == "__main__":
    for name in BACKENDS:
        self_check(name)
        print(f"naive ledger self-check ({name}): ok")
