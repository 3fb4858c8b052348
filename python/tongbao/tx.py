"""Transaction builders and the JSON form of the binary format (``docs/format.md``).

Builders return encoded ``bytes``; sign with a :class:`tongbao.Keyring`. Amounts are integers
in fen (1 yuan = 100 fen); floats are refused.

>>> import tongbao as tb
>>> keys = tb.Keyring()
>>> _ = keys.generate([1], tb.Scheme.ED25519, b"seed")
>>> tx = tb.issue(keys, central_bank=1, outputs=[(100, 5_000)], timestamp_ms=0)
>>> doc = tb.to_json(tx)
>>> doc["kind"], doc["outputs"]
('issue', [{'owner': 100, 'amount_fen': 5000}])
>>> tb.from_json(doc) == tx
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tongbao import _core
from tongbao.errors import InvalidArgument
from tongbao.types import Kind

#: Default validity window of built transactions: one hour.
DEFAULT_VALIDITY_MS = 3_600_000


def _outputs(outputs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    result = []
    for owner, amount in outputs:
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidArgument(f"amounts are integers in fen, got {amount!r}")
        result.append((int(owner), amount))
    return result


def encode(
    kind: Kind,
    inputs: Sequence[bytes],
    outputs: Iterable[tuple[int, int]],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
    signatures: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """Encode a transaction (unsigned unless ``signatures`` are given).

    Raises ``MalformedTransaction`` (a limit exceeded, field named) or ``InvalidArgument``.
    """
    expiry = timestamp_ms + DEFAULT_VALIDITY_MS if expiry_ms is None else expiry_ms
    return _core.encode_transaction(
        int(kind),
        list(inputs),
        _outputs(outputs),
        int(timestamp_ms),
        int(expiry),
        bytes(reference),
        [(int(s), bytes(sig)) for s, sig in signatures],
    )


def sign(keyring: _core.Keyring, tx: bytes, signers: Sequence[int]) -> bytes:
    """Sign one encoded transaction with the keys of ``signers`` (replacing any signatures)."""
    return keyring.sign([tx], [[int(s) for s in signers]])[0]


def issue(
    keyring: _core.Keyring,
    central_bank: int,
    outputs: Iterable[tuple[int, int]],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A signed issue: the central bank creates value in operator banks' wallets."""
    body = encode(Kind.ISSUE, [], outputs, timestamp_ms, expiry_ms, reference)
    return sign(keyring, body, [central_bank])


def transfer(
    keyring: _core.Keyring,
    inputs: Sequence[bytes],
    outputs: Iterable[tuple[int, int]],
    signers: Sequence[int],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A signed transfer spending explicit token ids (see :meth:`Ledger.build_payments` for the
    wallet-level way that picks tokens for you)."""
    body = encode(Kind.TRANSFER, inputs, outputs, timestamp_ms, expiry_ms, reference)
    return sign(keyring, body, signers)


def redeem(
    keyring: _core.Keyring,
    inputs: Sequence[bytes],
    change: Iterable[tuple[int, int]],
    signers: Sequence[int],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A signed redemption by an operator bank: inputs minus ``change`` is destroyed."""
    body = encode(Kind.REDEEM, inputs, change, timestamp_ms, expiry_ms, reference)
    return sign(keyring, body, signers)


def decode(tx: bytes) -> dict[str, Any]:
    """Decode an encoded transaction into a dict (binary fields as ``bytes``).

    Raises ``MalformedTransaction`` with ``.field`` and ``.offset`` naming what is wrong.
    """
    return dict(_core.decode_transaction(tx))


def transaction_id(tx: bytes) -> bytes:
    """The 32-byte id of an encoded transaction: SHA-256 of its body."""
    return _core.transaction_id(tx)


def token_id(tx_id: bytes, index: int) -> bytes:
    """The id of output ``index`` of transaction ``tx_id``."""
    return _core.token_id(tx_id, index)


def to_json(tx: bytes) -> dict[str, Any]:
    """The JSON form of an encoded transaction, for people and APIs (hex for binary fields).

    ``orjson.dumps(to_json(tx))`` gives the text. The ``id`` field is informative and ignored
    by :func:`from_json`.
    """
    d = decode(tx)
    doc = {
        "version": d["version"],
        "id": d["id"].hex(),
        "kind": Kind(d["kind"]).name.lower(),
        "timestamp_ms": d["timestamp_ms"],
        "expiry_ms": d["expiry_ms"],
        "inputs": [i.hex() for i in d["inputs"]],
        "outputs": [{"owner": o, "amount_fen": a} for o, a in d["outputs"]],
        "reference": d["reference"].hex(),
        "signatures": [{"signer": s, "signature": sig.hex()} for s, sig in d["signatures"]],
    }
    if "lock" in d:  # a lock (format version 3)
        doc["lock"] = dict(d["lock"])
    if "payer" in d:  # a capture or release (format version 3)
        doc["payer"] = d["payer"]
        if "amount_fen" in d:
            doc["amount_fen"] = d["amount_fen"]
            doc["keep_rest_locked"] = d["keep_rest_locked"]
    if "wallet" in d:  # wallet administration (format version 2)
        doc["wallet"] = d["wallet"]
        if "wallet_class" in d:
            doc["wallet_class"] = d["wallet_class"]
        if "registration" in d:
            reg = dict(d["registration"])
            reg["public_key"] = reg["public_key"].hex()
            doc["registration"] = reg
    return doc


def _admin_from_json(doc: dict[str, Any], kind: Kind) -> bytes:
    """Encode the JSON form of a wallet-administration transaction (kinds 4-8)."""
    registration = None
    try:
        if kind == Kind.REGISTER:
            r = _field(doc, "registration")
            registration = (
                int(r["wallet_kind"]),
                int(r["wallet_class"]),
                int(r["operator"]),
                int(r["parent"]),
                int(r["mcc"]),
                int(r["region"]),
                bool(r["linked_account"]),
                int(r["scheme"]),
                bytes.fromhex(r["public_key"]),
            )
        signatures = [
            (int(s["signer"]), bytes.fromhex(s["signature"])) for s in _field(doc, "signatures")
        ]
        reference = bytes.fromhex(_field(doc, "reference"))
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"JSON transaction: bad field value: {exc}") from None
    body = _core.encode_admin(
        int(kind),
        int(_field(doc, "wallet")),
        int(_field(doc, "timestamp_ms")),
        int(_field(doc, "expiry_ms")),
        reference,
        registration,
        int(doc.get("wallet_class", 0)),
    )
    if any(len(sig) != 64 for _, sig in signatures):
        raise InvalidArgument("JSON transaction: a signature is 64 bytes long")
    # encode_admin ends with an empty signature section (one zero byte): replace it.
    section = bytes([len(signatures)]) + b"".join(
        s.to_bytes(8, "little") + sig for s, sig in signatures
    )
    return body[:-1] + section


def _lock_from_json(doc: dict[str, Any], kind: Kind) -> bytes:
    """Encode the JSON form of a lock, capture or release (kinds 9-11)."""
    try:
        inputs = [bytes.fromhex(i) for i in _field(doc, "inputs")]
        reference = bytes.fromhex(_field(doc, "reference"))
        signatures = [
            (int(s["signer"]), bytes.fromhex(s["signature"])) for s in _field(doc, "signatures")
        ]
        timestamp_ms = int(_field(doc, "timestamp_ms"))
        expiry_ms = int(_field(doc, "expiry_ms"))
        if kind == Kind.LOCK:
            terms = _field(doc, "lock")
            body = _core.encode_lock(
                inputs,
                _outputs((o["owner"], o["amount_fen"]) for o in _field(doc, "outputs")),
                int(terms["beneficiary"]),
                int(terms["releaser"]),
                int(terms["deadline_ms"]),
                int(terms["deadline_capture_fen"]),
                timestamp_ms,
                expiry_ms,
                reference,
            )
        else:
            if len(inputs) != 1:
                raise InvalidArgument("JSON transaction: a capture or release has one input")
            amount = int(_field(doc, "amount_fen")) if kind == Kind.CAPTURE else None
            body = _core.encode_lock_use(
                inputs[0],
                int(_field(doc, "payer")),
                amount,
                bool(doc.get("keep_rest_locked", False)),
                timestamp_ms,
                expiry_ms,
                reference,
            )
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"JSON transaction: bad field value: {exc}") from None
    if any(len(sig) != 64 for _, sig in signatures):
        raise InvalidArgument("JSON transaction: a signature is 64 bytes long")
    section = bytes([len(signatures)]) + b"".join(
        s.to_bytes(8, "little") + sig for s, sig in signatures
    )
    return body[:-1] + section


def _field(doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise InvalidArgument(f"JSON transaction: missing field {name!r}")
    return doc[name]


def from_json(doc: dict[str, Any]) -> bytes:
    """Encode the JSON form made by :func:`to_json`. Raises ``InvalidArgument`` naming the
    field that is missing or wrong, or ``MalformedTransaction`` for a limit exceeded."""
    version = _field(doc, "version")
    if version not in (
        _core.FORMAT_VERSION,
        _core.ADMIN_FORMAT_VERSION,
        _core.LOCK_FORMAT_VERSION,
    ):
        raise InvalidArgument(f"JSON transaction: unsupported version {version!r}")
    kind_name = _field(doc, "kind")
    try:
        kind = Kind[str(kind_name).upper()]
    except KeyError:
        raise InvalidArgument(f"JSON transaction: unknown kind {kind_name!r}") from None
    if kind >= Kind.LOCK:
        return _lock_from_json(doc, kind)
    if kind >= Kind.REGISTER:
        return _admin_from_json(doc, kind)
    try:
        inputs = [bytes.fromhex(i) for i in _field(doc, "inputs")]
        reference = bytes.fromhex(_field(doc, "reference"))
        signatures = [
            (int(s["signer"]), bytes.fromhex(s["signature"])) for s in _field(doc, "signatures")
        ]
        outputs = [(o["owner"], o["amount_fen"]) for o in _field(doc, "outputs")]
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"JSON transaction: bad field value: {exc}") from None
    return encode(
        kind,
        inputs,
        outputs,
        int(_field(doc, "timestamp_ms")),
        int(_field(doc, "expiry_ms")),
        reference,
        signatures,
    )
