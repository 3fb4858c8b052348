"""Signature schemes through the Python API, checked against independent references.

- SM2 (scheme 2) against the ``openssl`` command line (OpenSSL 3, SM3, distinguishing id
  ``1234567812345678``), both ways: keys made and signatures made by openssl are verified by
  tongbao, and signatures made by tongbao are verified by openssl. Tampered signatures are
  rejected by both. openssl speaks DER ``ECDSA-Sig-Value``; tongbao 64-byte ``r || s``.
- Ed25519 (scheme 1): every Project Wycheproof case (``tests/vectors``), RFC 8032 section 7.1
  tests 1-3, and signatures exchanged with the ``cryptography`` package (a dev dependency).

The openssl binary is required, not optional: without it these tests fail (install the Debian
package ``openssl``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tongbao
from tongbao.errors import InvalidArgument, InvalidKey

ED25519 = 1
SM2 = 2
DISTID = "1234567812345678"
# Order of the sm2p256v1 base point.
SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
# DER SubjectPublicKeyInfo header for an uncompressed sm2p256v1 point (id-ecPublicKey, SM2 OID).
SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
VECTORS = Path(__file__).parent / "vectors" / "wycheproof_ed25519_test.json"
SM2_VECTORS = Path(__file__).parent / "vectors" / "openssl_sm2_vectors.json"


# ------------------------------------------------------------------------------------------------
# DER ECDSA-Sig-Value  <->  r || s


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_integer(value: int) -> bytes:
    # Minimal two's-complement encoding of a non-negative integer (a 0x00 byte when the top bit
    # would be set).
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_length(len(body)) + body


def rs_to_der(signature: bytes) -> bytes:
    """64-byte ``r || s`` to DER ``SEQUENCE { INTEGER r, INTEGER s }``."""
    assert len(signature) == 64
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    body = _der_integer(r) + _der_integer(s)
    return b"\x30" + _der_length(len(body)) + body


def _read_der(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    if pos + 2 > len(data) or data[pos] != tag:
        raise ValueError(f"expected DER tag {tag:#x} at {pos}")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return data[pos : pos + length], pos + length


def der_to_rs(der: bytes) -> bytes:
    """Strict DER ``ECDSA-Sig-Value`` to 64-byte ``r || s``."""
    body, end = _read_der(der, 0, 0x30)
    if end != len(der):
        raise ValueError("trailing bytes after the DER signature")
    out = b""
    pos = 0
    for _ in range(2):
        raw, pos = _read_der(body, pos, 0x02)
        if not raw or raw[0] & 0x80:
            raise ValueError("empty or negative INTEGER")
        if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
            raise ValueError("non-minimal INTEGER")
        value = int.from_bytes(raw, "big")
        if value >= 1 << 256:
            raise ValueError("INTEGER wider than 256 bits")
        out += value.to_bytes(32, "big")
    if pos != len(body):
        raise ValueError("trailing bytes inside the DER sequence")
    return out


def test_der_helpers_round_trip() -> None:
    for r, s in [(1, 1), (0x7F, 0x80), (SM2_N - 1, 1 << 255), (1 << 248, (1 << 256) - 1)]:
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        der = rs_to_der(sig)
        assert der_to_rs(der) == sig
    # The top bit of r set: a leading 0x00 keeps INTEGER positive (33 content bytes).
    assert rs_to_der(b"\xff" * 32 + b"\x01" * 32)[2:5] == b"\x02\x21\x00"
    for bad in [b"", b"\x30\x00", b"\x30\x06\x02\x01\x01\x02\x01\x01\x00", b"\x30\x03\x02\x01\x80"]:
        with pytest.raises(ValueError):
            der_to_rs(bad)


# ------------------------------------------------------------------------------------------------
# openssl


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail(
            "the `openssl` command line is required for the SM2 cross-checks and was not found "
            "on PATH: install the Debian package `openssl` (sudo apt-get install openssl, or "
            "`make system-deps`)",
            pytrace=False,
        )
    version = subprocess.run(
        [path, "version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    match = re.match(r"OpenSSL (\d+)\.", version)
    if match is None or int(match.group(1)) < 3:
        pytest.fail(
            f"SM2 cross-checks need OpenSSL >= 3 (pkeyutl -rawin with distid), found {version!r}: "
            "install the Debian package `openssl` from a current release",
            pytrace=False,
        )
    return path


def _run(cmd: list[str | Path]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, check=False)


def _check(cmd: list[str | Path]) -> bytes:
    proc = _run(cmd)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr.decode()}"
    )
    return proc.stdout


@dataclass
class OpensslKey:
    pem: Path
    pub_der: Path
    secret: bytes  # 32-byte private scalar
    public: bytes  # 65-byte uncompressed SEC1 point


def _hex_block(text: str, label: str) -> bytes:
    """The colon-separated hex bytes printed under ``label:`` by ``openssl pkey -text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{label}:")
    digits = ""
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if not re.fullmatch(r"[0-9a-fA-F:]+", stripped):
            break
        digits += stripped.replace(":", "")
    return bytes.fromhex(digits)


def make_openssl_key(openssl: str, directory: Path) -> OpensslKey:
    directory.mkdir(parents=True, exist_ok=True)
    pem = directory / "key.pem"
    pub_der = directory / "pub.der"
    _check([openssl, "genpkey", "-algorithm", "SM2", "-out", pem])
    _check([openssl, "pkey", "-in", pem, "-pubout", "-outform", "DER", "-out", pub_der])
    text = _check([openssl, "pkey", "-in", pem, "-text", "-noout"]).decode()
    assert "ASN1 OID: SM2" in text, text
    # The scalar may be printed with a leading 00 byte (or without leading zero bytes).
    secret = int.from_bytes(_hex_block(text, "priv"), "big").to_bytes(32, "big")
    public = _hex_block(text, "pub")
    assert len(public) == 65 and public[0] == 4, public.hex()
    spki = pub_der.read_bytes()
    assert spki == SM2_SPKI_PREFIX + public, spki.hex()
    return OpensslKey(pem, pub_der, secret, public)


def openssl_sign(openssl: str, key: OpensslKey, message: bytes, directory: Path) -> bytes:
    msg = directory / "msg.bin"
    sig = directory / "sig.der"
    msg.write_bytes(message)
    _check(
        [
            openssl, "pkeyutl", "-sign", "-rawin", "-digest", "sm3",
            "-pkeyopt", f"distid:{DISTID}", "-inkey", key.pem, "-in", msg, "-out", sig,
        ]
    )  # fmt: skip
    return sig.read_bytes()


def openssl_verify(
    openssl: str,
    public: bytes,
    message: bytes,
    der_signature: bytes,
    directory: Path,
    distid: str = DISTID,
) -> bool:
    pub = directory / "verify_pub.der"
    msg = directory / "verify_msg.bin"
    sig = directory / "verify_sig.der"
    pub.write_bytes(SM2_SPKI_PREFIX + public)
    msg.write_bytes(message)
    sig.write_bytes(der_signature)
    proc = _run(
        [
            openssl, "pkeyutl", "-verify", "-rawin", "-digest", "sm3",
            "-pkeyopt", f"distid:{distid}", "-pubin", "-keyform", "DER", "-inkey", pub,
            "-in", msg, "-sigfile", sig,
        ]
    )  # fmt: skip
    out = proc.stdout.decode()
    if proc.returncode == 0 and "Signature Verified Successfully" in out:
        return True
    # A verification failure, not an error running openssl (bad key file, unknown option).
    assert "Signature Verification Failure" in out, (
        f"openssl pkeyutl -verify did not run ({proc.returncode}): {out} {proc.stderr.decode()}"
    )
    return False


N_KEYS = 4
# Message lengths: empty, short, a 32-byte tx id, around SM3's padding (56) and block (64)
# boundaries, several blocks, large.
MESSAGE_LENGTHS = [0, 1, 32, 55, 56, 64, 65, 200, 4096]


@pytest.fixture(scope="module")
def openssl_keys(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> list[OpensslKey]:
    base = tmp_path_factory.mktemp("sm2keys")
    return [make_openssl_key(openssl, base / f"k{i}") for i in range(N_KEYS)]


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_openssl_keys_have_the_same_public_key_in_tongbao(openssl_keys: list[OpensslKey]) -> None:
    for key in openssl_keys:
        assert tongbao.public_key_from_secret(SM2, key.secret) == key.public


def test_sm2_openssl_signs_tongbao_verifies(
    openssl: str, openssl_keys: list[OpensslKey], tmp_path: Path
) -> None:
    checked = 0
    for k, key in enumerate(openssl_keys):
        other = openssl_keys[(k + 1) % len(openssl_keys)]
        for length in MESSAGE_LENGTHS:
            message = os.urandom(length)
            der = openssl_sign(openssl, key, message, tmp_path)
            assert rs_to_der(der_to_rs(der)) == der, "openssl's DER is minimal, like ours"
            sig = der_to_rs(der)
            context = f"key {key.public.hex()} msg {message.hex()} sig {sig.hex()}"
            assert tongbao.verify_signature(SM2, key.public, message, sig), context
            # Compressed SEC1 form of the same key.
            compressed = bytes([2 + (key.public[64] & 1)]) + key.public[1:33]
            assert tongbao.verify_signature(SM2, compressed, message, sig), context
            # Rejections: bit flips in r and s, another message, another key.
            for bit in (0, 255, 256 + 7, 511):
                assert not tongbao.verify_signature(SM2, key.public, message, _flip(sig, bit)), (
                    f"bit {bit} flipped accepted: {context}"
                )
            assert not tongbao.verify_signature(SM2, key.public, message + b"\x00", sig), context
            assert not tongbao.verify_signature(SM2, other.public, message, sig), context
            checked += 1
    assert checked == N_KEYS * len(MESSAGE_LENGTHS)


def _tongbao_secrets(count: int) -> list[bytes]:
    out = []
    while len(out) < count:
        candidate = os.urandom(32)
        if 1 <= int.from_bytes(candidate, "big") <= SM2_N - 2:
            out.append(candidate)
    return out


def test_sm2_tongbao_signs_openssl_verifies(
    openssl: str, openssl_keys: list[OpensslKey], tmp_path: Path
) -> None:
    # Keys made by openssl (secret scalar handed to tongbao) and keys made here.
    secrets = [key.secret for key in openssl_keys] + _tongbao_secrets(N_KEYS)
    checked = 0
    for secret in secrets:
        public = tongbao.public_key_from_secret(SM2, secret)
        for length in MESSAGE_LENGTHS:
            message = os.urandom(length)
            sig = tongbao.sign_message(SM2, secret, message)
            assert len(sig) == 64
            context = f"key {public.hex()} msg {message.hex()} sig {sig.hex()}"
            assert tongbao.verify_signature(SM2, public, message, sig), context
            der = rs_to_der(sig)
            assert openssl_verify(openssl, public, message, der, tmp_path), context
            # Tampered: both reject.
            bad = _flip(sig, 300)
            assert not tongbao.verify_signature(SM2, public, message, bad), context
            assert not openssl_verify(openssl, public, message, rs_to_der(bad), tmp_path), context
            assert not openssl_verify(openssl, public, message + b"!", der, tmp_path), context
            checked += 1
        # The distinguishing id is part of what is signed: another one must fail.
        sig = tongbao.sign_message(SM2, secret, b"distid")
        assert not openssl_verify(
            openssl, public, b"distid", rs_to_der(sig), tmp_path, distid="1234567812345679"
        )
    assert checked == 2 * N_KEYS * len(MESSAGE_LENGTHS)


def test_sm2_out_of_range_signatures_rejected(openssl_keys: list[OpensslKey]) -> None:
    key = openssl_keys[0]
    message = b"edge"
    good = tongbao.sign_message(SM2, key.secret, message)
    r, s = good[:32], good[32:]
    n = SM2_N.to_bytes(32, "big")
    zero = bytes(32)
    for sig in [zero + s, r + zero, n + s, r + n, b"\xff" * 64, zero * 2]:
        assert not tongbao.verify_signature(SM2, key.public, message, sig), sig.hex()
    for bad_len in (0, 63, 65, 72):
        with pytest.raises(InvalidArgument):
            tongbao.verify_signature(SM2, key.public, message, good[:bad_len].ljust(bad_len, b"\0"))
    for bad_key in [b"", b"\x04" + bytes(64), key.public[:-1], b"\x05" + key.public[1:]]:
        with pytest.raises(InvalidKey):
            tongbao.verify_signature(SM2, bad_key, message, good)


def _recorded_sm2_cases() -> list[Any]:
    doc = json.loads(SM2_VECTORS.read_text())
    return [
        pytest.param(
            bytes.fromhex(c["public"]),
            bytes.fromhex(c["message"]),
            bytes.fromhex(c["signature"]),
            bytes.fromhex(c["der"]),
            c["result"],
            id=f"case{i}-{len(c['message']) // 2}B-{c['result']}",
        )
        for i, c in enumerate(doc["cases"])
    ]


@pytest.mark.parametrize(("public", "message", "signature", "der", "result"), _recorded_sm2_cases())
def test_sm2_recorded_openssl_vectors(
    public: bytes, message: bytes, signature: bytes, der: bytes, result: str
) -> None:
    """Signatures recorded from openssl (tests/vectors/gen_openssl_sm2.py); no openssl needed."""
    assert der_to_rs(der) == signature
    assert rs_to_der(signature) == der
    assert tongbao.verify_signature(SM2, public, message, signature) is (result == "valid")
    assert tongbao.verify_signature(SM2, public, message, _flip(signature, 200)) is False


# ------------------------------------------------------------------------------------------------
# Ed25519: Wycheproof


def _wycheproof_cases() -> list[Any]:
    doc = json.loads(VECTORS.read_text())
    cases = []
    for group in doc["testGroups"]:
        public = bytes.fromhex(group["publicKey"]["pk"])
        for test in group["tests"]:
            cases.append(
                pytest.param(
                    public,
                    bytes.fromhex(test["msg"]),
                    bytes.fromhex(test["sig"]),
                    test["result"],
                    id=f"tc{test['tcId']}-{test['result']}",
                )
            )
    assert len(cases) == doc["numberOfTests"] == 151
    return cases


@pytest.mark.parametrize(("public", "message", "signature", "result"), _wycheproof_cases())
def test_wycheproof_ed25519(public: bytes, message: bytes, signature: bytes, result: str) -> None:
    assert result in ("valid", "invalid")
    if len(signature) != 64:
        # A signature of the wrong length is refused outright.
        assert result == "invalid"
        with pytest.raises(InvalidArgument):
            tongbao.verify_signature(ED25519, public, message, signature)
        return
    assert tongbao.verify_signature(ED25519, public, message, signature) is (result == "valid")


# ------------------------------------------------------------------------------------------------
# Ed25519: RFC 8032 section 7.1, tests 1-3

RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


@pytest.mark.parametrize(
    ("secret", "public", "message", "signature"), RFC8032, ids=["test1", "test2", "test3"]
)
def test_rfc8032_ed25519(secret: str, public: str, message: str, signature: str) -> None:
    sk, pk, msg, sig = map(bytes.fromhex, (secret, public, message, signature))
    assert tongbao.public_key_from_secret(ED25519, sk) == pk
    assert tongbao.sign_message(ED25519, sk, msg) == sig
    assert tongbao.verify_signature(ED25519, pk, msg, sig) is True
    for bit in range(0, 512, 37):
        assert tongbao.verify_signature(ED25519, pk, msg, _flip(sig, bit)) is False, bit
    assert tongbao.verify_signature(ED25519, pk, msg + b"\x00", sig) is False


def test_ed25519_agrees_with_cryptography() -> None:
    # `cryptography` is a dev dependency (pip install --group dev): a missing one fails here.
    from cryptography.hazmat.primitives.asymmetric import ed25519 as ed

    for length in (0, 1, 32, 200):
        secret = os.urandom(32)
        message = os.urandom(length)
        theirs = ed.Ed25519PrivateKey.from_private_bytes(secret)
        public = theirs.public_key().public_bytes_raw()
        assert tongbao.public_key_from_secret(ED25519, secret) == public
        # Ed25519 is deterministic: both sign identically and accept each other's signatures.
        sig = tongbao.sign_message(ED25519, secret, message)
        assert sig == theirs.sign(message)
        theirs.public_key().verify(sig, message)
        assert tongbao.verify_signature(ED25519, public, message, theirs.sign(message))
