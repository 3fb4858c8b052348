"""A gate controller in its own process, for the crash tests of ``test_transit_crash.py``.

``python tests/crash/transit_gate.py DIR [BATCH]``: opens the durable ledger ``DIR/ledger`` and
the engine journal ``DIR/journal`` (recovering both), then sends every tap of ``DIR/taps.bin``
to the engine, ``BATCH`` at a time, in order (the gates resend whatever they sent before: an
answer lost in a crash is never known to have arrived), and appends one line per answer to
``DIR/acks`` (tap id, outcome, fare, repeat) as the gates receive it. Prints the number of
journal records replayed at start-up. The parent test SIGKILLs it mid-burst.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tongbao as tb
from tongbao.transit.engine import TransitEngine
from tongbao.transit.fares import load_network
from tongbao.transit.taps import TAP_LEN, Tap


def main(workdir: str, batch: int) -> None:
    d = Path(workdir)
    world = json.loads((d / "world.json").read_text())
    ledger = tb.Ledger.open(d / "ledger", threads=1)
    keys = tb.Keyring()
    for wallet, secret in world["secrets"].items():
        keys.add(int(wallet), 1, bytes.fromhex(secret))
    network = load_network(world["network"])
    engine = TransitEngine(ledger, keys, network, world["operator"], journal=d / "journal")
    engine.register_cards(world["cards"])
    engine.recover()  # may settle a journaled batch: the ledger's clock moves
    data = (d / "taps.bin").read_bytes()
    taps = [Tap.decode(data[i : i + TAP_LEN]) for i in range(0, len(data), TAP_LEN)]
    with open(d / "acks", "a") as acks:
        for lo in range(0, len(taps), batch):
            chunk = taps[lo : lo + batch]
            now = max(max(t.time_ms for t in chunk), ledger.last_timestamp_ms)
            for tap, decision in zip(chunk, engine.process(chunk, now), strict=True):
                acks.write(
                    f"{tap.tap_id.hex()} {int(decision.outcome)} {decision.fare_fen} "
                    f"{int(decision.repeat)}\n"
                )
            acks.flush()
    print(engine.replayed_records, flush=True)
    ledger.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
