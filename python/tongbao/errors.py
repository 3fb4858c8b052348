"""Exceptions raised by tongbao, under one root: :class:`TongbaoError`.

A whole call that is refused raises one of these and changes nothing. A single transaction that
fails inside a batch is never an exception: it gets a :class:`tongbao.Status` in the results.

>>> from tongbao.errors import MalformedTransaction, TongbaoError
>>> issubclass(MalformedTransaction, ValueError) and issubclass(MalformedTransaction, TongbaoError)
True
"""

from __future__ import annotations


class TongbaoError(Exception):
    """Root of every error tongbao raises."""


class MalformedTransaction(TongbaoError, ValueError):
    """An encoding (transaction or batch) cannot be read.

    ``field`` names the field and ``offset`` the byte where decoding stopped.
    """

    def __init__(self, message: str, field: str = "", offset: int = 0) -> None:
        super().__init__(message)
        self.field = field
        self.offset = offset


class InvalidKey(TongbaoError, ValueError):
    """A public or secret key is the wrong length, not on the curve, or weak."""


class DuplicateWallet(TongbaoError, ValueError):
    """A wallet id is registered already (or twice in one call); nothing was registered."""

    def __init__(self, message: str, wallet_id: int = 0) -> None:
        super().__init__(message)
        self.wallet_id = wallet_id


class UnknownWallet(TongbaoError, KeyError):
    """A wallet id is not registered."""

    def __init__(self, message: str, wallet_id: int = 0) -> None:
        super().__init__(message)
        self.wallet_id = wallet_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BatchRejected(TongbaoError, ValueError):
    """A whole batch was refused (too large, or its timestamp goes backwards); nothing applied."""


class InsufficientFunds(TongbaoError):
    """A payment cannot be built: the payer's unspent tokens do not cover the amount."""


class InvalidArgument(TongbaoError, ValueError):
    """An argument is out of range or inconsistent with another."""


class InvariantViolation(TongbaoError, AssertionError):
    """The ledger state is inconsistent. This is a bug: stop and report it."""


class StorageError(TongbaoError, OSError):
    """Reading or writing the ledger directory failed. After a failed write the ledger refuses
    further calls (:class:`LedgerFailed`): reopen it to recover from its log."""


class CorruptLog(TongbaoError):
    """A log segment or snapshot is damaged beyond a torn final record: the message names the
    file and byte offset. Nothing is skipped silently; restore the file or investigate."""


class LedgerFailed(TongbaoError):
    """A write to the log failed earlier; the in-memory state may be ahead of the log, so the
    ledger stopped. Reopen it with :meth:`tongbao.Ledger.open`."""


class LedgerLocked(TongbaoError):
    """Another process has this ledger directory open."""


class LedgerClosed(TongbaoError):
    """The ledger was closed with :meth:`tongbao.Ledger.close`; reads work, changes do not."""


class InvalidLimits(TongbaoError, ValueError):
    """A limits config is malformed or inconsistent; the message names the field. The ledger
    keeps the limits it had."""


class PayrollFileError(TongbaoError, ValueError):
    """A payroll file (CSV or ISO 20022 ``pain.001``) was refused as a whole before any money
    moved. ``where`` names the place: ``line 17, field amount_yuan`` for CSV, an XPath such as
    ``/Document/CstmrCdtTrfInitn/PmtInf[1]/CdtTrfTxInf[3]/Amt/InstdAmt (line 40)`` for XML;
    ``reason`` says what is wrong."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class PayrollRunError(TongbaoError):
    """A payroll run cannot go on: its employer cannot sign, its recorded plan does not match
    the file, or its plan expired before it could be completed. The message says what to do."""


class InvalidFareConfig(InvalidArgument):
    """A transit fare config (network, fare bands, caps) is malformed or inconsistent; the
    message names the file and the field (``line "Line 3".gaps_m``)."""


class InvalidPreset(InvalidArgument):
    """A simulation preset file is malformed or inconsistent; the message names the file and
    the field (``scenario[2].amount.min_fen``)."""


class ClusterTimeout(TongbaoError, TimeoutError):
    """A cluster did not answer in time. What was submitted may still settle: resubmitting the
    same transactions is safe (they answer ALREADY_SETTLED)."""
