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


#: An output: ``(owner, amount_fen)``, or ``(owner, amount_fen, condition)`` for value
#: earmarked under a spending condition (programmable money, format version 4).
Output = tuple[int, int] | tuple[int, int, int]


def _outputs(outputs: Iterable[Output]) -> list[tuple[int, int, int]]:
    result = []
    for output in outputs:
        if len(output) not in (2, 3):
            raise InvalidArgument(
                "an output is (owner, amount_fen) or (owner, amount_fen, condition), "
                f"got {output!r}"
            )
        owner, amount = output[0], output[1]
        condition = output[2] if len(output) == 3 else 0
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidArgument(f"amounts are integers in fen, got {amount!r}")
        if len(output) == 3 and (not isinstance(condition, int) or condition <= 0):
            raise InvalidArgument(f"a condition id is a positive integer, got {condition!r}")
        result.append((int(owner), amount, int(condition)))
    return result


def encode(
    kind: Kind,
    inputs: Sequence[bytes],
    outputs: Iterable[Output],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
    signatures: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """Encode a transaction (unsigned unless ``signatures`` are given).

    Raises ``MalformedTransaction`` (a limit exceeded, field named) or ``InvalidArgument``.
    """
    expiry = timestamp_ms + DEFAULT_VALIDITY_MS if expiry_ms is None else expiry_ms
    outs = _outputs(outputs)
    return _core.encode_transaction(
        int(kind),
        list(inputs),
        [(o, a) for o, a, _ in outs],
        int(timestamp_ms),
        int(expiry),
        bytes(reference),
        [(int(s), bytes(sig)) for s, sig in signatures],
        [c for _, _, c in outs] if any(c for _, _, c in outs) else None,
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
    outputs: Iterable[Output],
    signers: Sequence[int],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A signed transfer spending explicit token ids (see :meth:`Ledger.build_payments` for the
    wallet-level way that picks tokens for you). An output ``(owner, amount_fen, condition)``
    is earmarked under that spending condition (``docs/programmable-money.md``)."""
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


def define_condition(
    keyring: _core.Keyring,
    condition: int,
    issuer: int,
    reclaimer: int,
    not_before_ms: int,
    valid_until_ms: int,
    timestamp_ms: int,
    mccs: Iterable[int] = (),
    merchants: Iterable[int] = (),
    regions: Iterable[int] = (),
    not_transferable: bool = False,
    not_redeemable: bool = False,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A signed DEFINE (kind 13): the spending condition ``condition``, signed by ``issuer``.

    Earmarked value is spendable at merchants whose wallet id, category (MCC) and region are
    in the lists (an empty list allows any) from ``not_before_ms`` until before
    ``valid_until_ms`` (batch times); then ``reclaimer`` may take it back with
    :func:`reclaim`. Raises ``MalformedTransaction`` naming the field (a window that ends
    before it starts, a list over its limit).

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> _ = keys.generate([7], tb.Scheme.ED25519, b"doc")
    >>> tx = tb.define_condition(keys, 2020, issuer=7, reclaimer=7, not_before_ms=0,
    ...                          valid_until_ms=86_400_000, timestamp_ms=0, mccs=[5411, 5812],
    ...                          not_transferable=True)
    >>> d = tb.decode(tx)["define"]
    >>> d["condition"], d["mccs"], d["flags"]
    (2020, [5411, 5812], 1)
    """
    expiry = timestamp_ms + DEFAULT_VALIDITY_MS if expiry_ms is None else expiry_ms
    flags = (_core.FLAG_NOT_TRANSFERABLE if not_transferable else 0) | (
        _core.FLAG_NOT_REDEEMABLE if not_redeemable else 0
    )
    body = _core.encode_define(
        int(timestamp_ms),
        int(expiry),
        int(condition),
        int(issuer),
        int(reclaimer),
        int(not_before_ms),
        int(valid_until_ms),
        flags,
        sorted({int(m) for m in mccs}),
        sorted({int(m) for m in merchants}),
        sorted({int(r) for r in regions}),
        bytes(reference),
    )
    return sign(keyring, body, [issuer])


def reclaim(
    keyring: _core.Keyring,
    reclaimer: int,
    inputs: Sequence[bytes],
    amount_fen: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A signed RECLAIM (kind 14): earmarked tokens ``inputs`` (worth ``amount_fen`` in all)
    of an expired condition go back to its ``reclaimer``, who signs; their holders do not.

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> _ = keys.generate([7], tb.Scheme.ED25519, b"doc")
    >>> tx = tb.reclaim(keys, 7, [bytes(32)], 20_000, timestamp_ms=0)
    >>> tb.decode(tx)["kind"] == tb.Kind.RECLAIM, tb.decode(tx)["version"]
    (True, 4)
    """
    body = encode(
        Kind.RECLAIM, inputs, [(reclaimer, amount_fen)], timestamp_ms, expiry_ms, reference
    )
    return sign(keyring, body, [reclaimer])


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
        "outputs": [
            {"owner": o[0], "amount_fen": o[1]} | ({"condition": o[2]} if len(o) == 3 else {})
            for o in d["outputs"]
        ],
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
    if "define" in d:  # a spending condition (format version 4)
        doc["define"] = dict(d["define"])
    return doc


def _define_from_json(doc: dict[str, Any]) -> bytes:
    """Encode the JSON form of a condition definition (kind 13)."""
    try:
        c = _field(doc, "define")
        signatures = [
            (int(s["signer"]), bytes.fromhex(s["signature"])) for s in _field(doc, "signatures")
        ]
        body = _core.encode_define(
            int(_field(doc, "timestamp_ms")),
            int(_field(doc, "expiry_ms")),
            int(c["condition"]),
            int(c["issuer"]),
            int(c["reclaimer"]),
            int(c["not_before_ms"]),
            int(c["valid_until_ms"]),
            int(c["flags"]),
            [int(m) for m in c["mccs"]],
            [int(m) for m in c["merchants"]],
            [int(r) for r in c["regions"]],
            bytes.fromhex(_field(doc, "reference")),
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"JSON transaction: bad field value: {exc}") from None
    if any(len(sig) != 64 for _, sig in signatures):
        raise InvalidArgument("JSON transaction: a signature is 64 bytes long")
    section = bytes([len(signatures)]) + b"".join(
        s.to_bytes(8, "little") + sig for s, sig in signatures
    )
    return body[:-1] + section


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
                [
                    (owner, amount)
                    for owner, amount, _ in _outputs(
                        (o["owner"], o["amount_fen"]) for o in _field(doc, "outputs")
                    )
                ],
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
        4,
    ):
        raise InvalidArgument(f"JSON transaction: unsupported version {version!r}")
    kind_name = _field(doc, "kind")
    try:
        kind = Kind[str(kind_name).upper()]
    except KeyError:
        raise InvalidArgument(f"JSON transaction: unknown kind {kind_name!r}") from None
    if kind == Kind.DEFINE:
        return _define_from_json(doc)
    if Kind.LOCK <= kind <= Kind.RELEASE:
        return _lock_from_json(doc, kind)
    if Kind.REGISTER <= kind <= Kind.CLOSE:
        return _admin_from_json(doc, kind)
    try:
        inputs = [bytes.fromhex(i) for i in _field(doc, "inputs")]
        reference = bytes.fromhex(_field(doc, "reference"))
        signatures = [
            (int(s["signer"]), bytes.fromhex(s["signature"])) for s in _field(doc, "signatures")
        ]
        outputs: list[Output] = [
            (o["owner"], o["amount_fen"], o["condition"])
            if "condition" in o
            else (o["owner"], o["amount_fen"])
            for o in _field(doc, "outputs")
        ]
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
