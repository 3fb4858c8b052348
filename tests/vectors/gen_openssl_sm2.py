"""Regenerate ``openssl_sm2_vectors.json``: SM2 signatures made by the openssl command line.

    python tests/vectors/gen_openssl_sm2.py > tests/vectors/openssl_sm2_vectors.json

Each case is a fresh ``openssl genpkey -algorithm SM2`` key, a random message (lengths chosen to
straddle SM3's 64-byte block and its 56-byte padding boundary) and ``openssl pkeyutl -sign
-rawin -digest sm3`` with distinguishing id ``1234567812345678`` (``result: valid``) or with
another id or none at all (``distid: ""``), which a verifier bound to the default id must reject
(``result: invalid``). Signatures are stored as 64-byte ``r || s`` and as openssl's DER. Needs
OpenSSL >= 3 (Debian package ``openssl``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_DISTID = "1234567812345678"
OTHER_DISTIDS = ["ALICE123@YAHOO.COM", "1234567812345679", ""]
LENGTHS = [0, 1, 3, 31, 32, 33, 55, 56, 57, 63, 64, 65, 100, 119, 120, 127, 128, 129, 1000]


def run(*args: str | Path) -> bytes:
    return subprocess.run([str(a) for a in args], capture_output=True, check=True).stdout


def hex_block(text: str, label: str) -> bytes:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{label}:")
    digits = ""
    for line in lines[start + 1 :]:
        if not re.fullmatch(r"[0-9a-fA-F:]+", line.strip()):
            break
        digits += line.strip().replace(":", "")
    return bytes.fromhex(digits)


def der_to_rs(der: bytes) -> bytes:
    # SEQUENCE { INTEGER r, INTEGER s }, both below 2^256: short-form lengths only.
    assert der[0] == 0x30 and der[1] == len(der) - 2, der.hex()
    out, pos = b"", 2
    for _ in range(2):
        assert der[pos] == 0x02
        n = der[pos + 1]
        out += int.from_bytes(der[pos + 2 : pos + 2 + n], "big").to_bytes(32, "big")
        pos += 2 + n
    assert pos == len(der)
    return out


def case(directory: Path, length: int, distid: str) -> dict[str, str]:
    key = directory / "key.pem"
    msg = directory / "msg.bin"
    sig = directory / "sig.der"
    run("openssl", "genpkey", "-algorithm", "SM2", "-out", key)
    public = hex_block(run("openssl", "pkey", "-in", key, "-text", "-noout").decode(), "pub")
    message = os.urandom(length)
    msg.write_bytes(message)
    opts = ["-pkeyopt", f"distid:{distid}"] if distid else []
    run("openssl", "pkeyutl", "-sign", "-rawin", "-digest", "sm3", *opts, "-inkey", key,
        "-in", msg, "-out", sig)  # fmt: skip
    der = sig.read_bytes()
    return {
        "public": public.hex(),
        "message": message.hex(),
        "signature": der_to_rs(der).hex(),
        "der": der.hex(),
        "distid": distid,
        "result": "valid" if distid == DEFAULT_DISTID else "invalid",
    }


def main() -> None:
    version = run("openssl", "version").decode().strip()
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for length in LENGTHS:
            for _ in range(2):
                cases.append(case(Path(tmp), length, DEFAULT_DISTID))
        for i, distid in enumerate(OTHER_DISTIDS):
            cases.append(case(Path(tmp), [0, 32, 100][i], distid))
    doc = {
        "generator": f"{version}; tests/vectors/gen_openssl_sm2.py",
        "curve": "sm2p256v1",
        "hash": "SM3",
        "public_key": "uncompressed SEC1, 65 bytes",
        "signature": "r || s, 32 bytes each, big-endian; der: openssl's ECDSA-Sig-Value",
        "cases": cases,
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
