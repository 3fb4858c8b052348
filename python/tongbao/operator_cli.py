"""The operator-bank commands of the ``tongbao`` CLI: ``tongbao wallets`` and ``tongbao report``.

``tongbao wallets open|upgrade|freeze|unfreeze|close`` builds a wallet-administration
transaction, signs it with the signer's key and settles it (alone, in one batch) on the durable
ledger in ``--ledger DIR``; it prints the status and exits 0 for ``OK``, 1 otherwise.
``tongbao wallets show`` prints a wallet. ``tongbao report`` prints the end-of-day report of a
Shanghai calendar day from the ledger's log.

Keys: ``--seed`` derives the signer's key (and a new wallet's, unless ``--public-key`` is
given) deterministically, as ``Ledger.open_wallets`` does for simulations and demos; a real
operator signs with its own key through :func:`tongbao.register_wallet` and friends.

>>> import tempfile, tongbao as tb
>>> from tongbao.cli import main
>>> d = tempfile.mkdtemp()
>>> with tb.Ledger.open(d) as ledger:  # bootstrap: central bank and one operator bank
...     keys = tb.Keyring()
...     ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
...     ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
>>> main(["wallets", "open", "--ledger", d, "--signer", "10", "--wallet", "100",
...       "--kind", "personal", "--class", "4", "--at-ms", "1000"])
wallets open 100: OK
0
>>> main(["wallets", "upgrade", "--ledger", d, "--wallet", "100", "--class", "2",
...       "--at-ms", "2000"])
wallets upgrade 100: OK
0
>>> main(["wallets", "freeze", "--ledger", d, "--signer", "1", "--wallet", "100",
...       "--at-ms", "3000"])
wallets freeze 100: NOT_AUTHORIZED
1
>>> main(["wallets", "show", "--ledger", d, "--wallet", "100", "--json"])
{"wallet":100,"kind":"PERSONAL","class":2,"operator":10,"parent":0,"status":"ACTIVE","balance_fen":0}
0
>>> main(["report", "--ledger", d, "--day", "1970-01-01", "--json"]) == 0
... # doctest: +ELLIPSIS
{"day":"1970-01-01","batches":3,"transactions":3,...}
True
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from rich.console import Console

import tongbao as tb
from tongbao.errors import InvalidArgument

EXIT_OK = 0
EXIT_FAILED = 1

_KINDS = {k.name.lower(): k for k in tb.WalletKind}
_SCHEMES = {s.name.lower(): s for s in tb.Scheme}
_ACTIONS = ("open", "upgrade", "freeze", "unfreeze", "close", "show")
_UPDATES: dict[str, Callable[..., bytes]] = {
    "freeze": tb.freeze_wallet,
    "unfreeze": tb.unfreeze_wallet,
    "close": tb.close_wallet,
}


def _wallet_id(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a wallet id, got {text!r}") from None
    if not 0 < value < 2**64:
        raise argparse.ArgumentTypeError(f"a wallet id is 1 to 2**64-1, got {value}")
    return value


def add_wallets(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``wallets`` subcommand."""
    p = subparsers.add_parser(
        "wallets",
        help="open, upgrade/downgrade, freeze, unfreeze, close or show a wallet",
        description=(
            "Wallet administration on the durable ledger in --ledger DIR: each action but "
            "'show' is a transaction signed by the wallet's operator bank (the central bank for "
            "operator wallets), settled in its own batch and logged. Exit status 0 if it "
            "settled OK, 1 with its status otherwise."
        ),
    )
    p.add_argument("action", choices=_ACTIONS)
    p.add_argument("--ledger", type=Path, required=True, metavar="DIR")
    p.add_argument("--wallet", type=_wallet_id, required=True)
    p.add_argument(
        "--signer",
        type=_wallet_id,
        help="signing wallet (default: the wallet's operator; for open: --operator)",
    )
    p.add_argument("--kind", choices=sorted(_KINDS), default="personal", help="open: wallet kind")
    p.add_argument(
        "--class", dest="wallet_class", type=int, default=None, help="open, upgrade: class 1-4"
    )
    p.add_argument("--operator", type=_wallet_id, help="open: operator bank (default: signer)")
    p.add_argument("--parent", type=_wallet_id, default=0, help="open: parent of a sub-wallet")
    p.add_argument("--mcc", type=int, default=0, help="open: merchant category code")
    p.add_argument("--region", type=int, default=0, help="open: region code")
    p.add_argument("--linked-account", action="store_true", help="open: has a deposit account")
    p.add_argument("--scheme", choices=sorted(_SCHEMES), default="ed25519")
    p.add_argument("--public-key", help="open: the new wallet's public key (hex)")
    p.add_argument("--seed", default="tongbao", help="derive keys from this seed (demo keys)")
    p.add_argument("--at-ms", type=int, help="batch timestamp, Unix ms (default: now)")
    p.add_argument("--json", action="store_true", help="show: print JSON")
    p.set_defaults(handler=run_wallets)


def _show(ledger: tb.Ledger, wallet: int, as_json: bool, console: Console) -> int:
    info = ledger.wallet(wallet)
    if info is None:
        raise InvalidArgument(f"wallet {wallet} is not registered")
    doc = {
        "wallet": wallet,
        "kind": info.kind.name,
        "class": info.wallet_class,
        "operator": info.operator,
        "parent": info.parent,
        "status": info.status.name,
        "balance_fen": info.balance_fen,
    }
    if as_json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        console.print(", ".join(f"{k} {v}" for k, v in doc.items()))
    return EXIT_OK


def run_wallets(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao wallets ACTION``: build, sign and settle one administration transaction
    (or show a wallet)."""
    if not args.ledger.is_dir():
        raise InvalidArgument(f"{args.ledger} is not a directory")
    with tb.Ledger.open(args.ledger) as ledger:
        if args.action == "show":
            return _show(ledger, args.wallet, args.json, console)
        now = args.at_ms if args.at_ms is not None else int(time.time() * 1000)
        now = max(now, ledger.last_timestamp_ms)
        scheme = _SCHEMES[args.scheme]
        seed = args.seed.encode()
        keys = tb.Keyring()
        signer = args.signer
        if args.action == "open":
            signer = signer or args.operator
            if signer is None:
                raise InvalidArgument("open: give --signer (or --operator)")
            if args.public_key:
                try:
                    public_key = bytes.fromhex(args.public_key)
                except ValueError:
                    raise InvalidArgument("--public-key: not hex") from None
            else:
                public_key = keys.generate([args.wallet], int(scheme), seed)[0]
            signer_info = ledger.wallet(signer)
            keys.generate([signer], int(signer_info.scheme if signer_info else scheme), seed)
            tx = tb.register_wallet(
                keys,
                signer,
                args.wallet,
                _KINDS[args.kind],
                public_key,
                timestamp_ms=now,
                scheme=scheme,
                wallet_class=args.wallet_class or 1,
                operator=args.operator,
                parent=args.parent,
                mcc=args.mcc,
                region=args.region,
                linked_account=args.linked_account,
            )
        else:
            info = ledger.wallet(args.wallet)
            if signer is None:
                if info is None or not info.operator:
                    raise InvalidArgument(f"{args.action}: give --signer")
                signer = info.operator if info.kind != tb.WalletKind.OPERATOR else 0
                if not signer:
                    raise InvalidArgument(f"{args.action}: give --signer (a central-bank wallet)")
            signer_info = ledger.wallet(signer)
            keys.generate([signer], int(signer_info.scheme if signer_info else scheme), seed)
            if args.action == "upgrade":
                if args.wallet_class is None:
                    raise InvalidArgument("upgrade: give --class")
                tx = tb.set_wallet_class(
                    keys, signer, args.wallet, args.wallet_class, timestamp_ms=now
                )
            else:
                build = _UPDATES[args.action]
                tx = build(keys, signer, args.wallet, timestamp_ms=now)
        status = ledger.settle([tx], now).status(0)
    print(f"wallets {args.action} {args.wallet}: {status.name}")
    return EXIT_OK if status == tb.Status.OK else EXIT_FAILED


def add_report(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report",
        help="end-of-day report per operator bank for one Shanghai calendar day",
        description=(
            "Read the log of the ledger in --ledger DIR (read-only) and print, for the "
            "Asia/Shanghai calendar day --day, each operator bank's wallets by kind and class, "
            "transactions, value in and out, position against the central bank, and the gross "
            "and net settlement matrices between operators."
        ),
    )
    p.add_argument("--ledger", type=Path, required=True, metavar="DIR")
    p.add_argument("--day", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao report``: compute and print the day's report."""
    if not args.ledger.is_dir():
        raise InvalidArgument(f"{args.ledger} is not a directory")
    report = tb.day_report(args.ledger, args.day)
    if args.json:
        sys.stdout.write(orjson.dumps(report.to_json()).decode() + "\n")
    else:
        print(report.render())
    return EXIT_OK
