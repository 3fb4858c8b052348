"""Enumerations shared by the API: statuses, transaction kinds, wallet kinds, schemes."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """The outcome of one transaction in a batch (see ``docs/status-codes.md``).

    The values are part of the log format and never change.

    >>> Status(0).name, Status.ALREADY_SETTLED.value
    ('OK', 1)
    """

    OK = 0
    ALREADY_SETTLED = 1
    MALFORMED = 2
    EXPIRED = 3
    NOT_YET_VALID = 4
    DUPLICATE_INPUT = 5
    ZERO_VALUE_OUTPUT = 6
    VALUE_OVERFLOW = 7
    UNKNOWN_WALLET = 8
    BAD_SIGNATURE = 9
    MISSING_SIGNATURE = 10
    UNEXPECTED_SIGNER = 11
    UNKNOWN_INPUT = 12
    INPUT_SPENT = 13
    VALUE_MISMATCH = 14
    NOT_AUTHORIZED = 15
    WALLET_FROZEN = 16
    WALLET_CLOSED = 17
    LIMIT_PAYMENT = 18
    LIMIT_DAILY = 19
    LIMIT_ANNUAL = 20
    LIMIT_BALANCE = 21
    WALLET_EXISTS = 22
    INVALID_WALLET = 23
    BALANCE_NOT_ZERO = 24
    INPUT_LOCKED = 25
    NOT_LOCKED = 26
    CAPTURE_EXCEEDS_LOCK = 27
    LOCK_DEADLINE_PASSED = 28
    NOT_RELEASER = 29


class Kind(IntEnum):
    """What a transaction does: payments (1-3, format version 1), wallet administration
    (4-8, format version 2, signed by the wallet's operator bank) or locks (9-11, format
    version 3, see ``docs/locks.md``)."""

    ISSUE = 1
    TRANSFER = 2
    REDEEM = 3
    REGISTER = 4
    SET_CLASS = 5
    FREEZE = 6
    UNFREEZE = 7
    CLOSE = 8
    LOCK = 9
    CAPTURE = 10
    RELEASE = 11


class WalletKind(IntEnum):
    """Who holds a wallet."""

    PERSONAL = 1
    CORPORATE = 2
    MERCHANT = 3
    OPERATOR = 4
    CENTRAL_BANK = 5


class Scheme(IntEnum):
    """Signature scheme of a wallet's key."""

    ED25519 = 1
    SM2 = 2


class WalletStatus(IntEnum):
    """Whether a wallet can pay and receive: frozen wallets cannot pay, closed ones do nothing."""

    ACTIVE = 0
    FROZEN = 1
    CLOSED = 2
