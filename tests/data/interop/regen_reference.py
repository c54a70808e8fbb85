"""Regenerate the reference-signed golden receipts (run by hand, once).

    /tmp/refenv/bin/python tests/data/interop/regen_reference.py          # phase 1
    cargo run --example interop_sign                                      # ours-signed/
    /tmp/refenv/bin/python tests/data/interop/regen_reference.py --check-ours  # phase 2

Needs the Python reference (`csc_runner` 0.5.2 + `cryptography`). Without it
this script prints a loud SKIP and exits 0: the committed files are the
interop evidence, and the Rust tests never need Python.

TEST ONLY: the key is the RFC 8032 section 7.1 TEST 1 key, published in the
RFC. Never trust it for anything.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    from csc_runner.cli import _blocked_receipt_dict, _hash_policy
    from csc_runner.executor import run_contract
    from csc_runner.models import CommandContract
    import yaml

    from csc_runner.policy import _UniqueKeyLoader, evaluate_contract
    from csc_runner.receipts import write_receipt
    from csc_runner.signing import (
        StaticKeyResolver,
        VerificationError,
        sign_receipt,
        verify_receipt_signature,
    )
    from csc_runner.utils import hash_contract
except ImportError as exc:  # pragma: no cover
    print(f"SKIP: Python reference (csc_runner) not importable: {exc}", file=sys.stderr)
    sys.exit(0)

HERE = Path(__file__).resolve().parent
SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
KEY_ID = "csc-interop-test-key-1"
SIGNED_AT = "2026-11-21T12:00:00.000000+00:00"


def key_files() -> bytes:
    seed = bytes.fromhex(SEED_HEX)
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    keys = HERE / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "test-key.seed.hex").write_text(SEED_HEX + "\n")
    (keys / "test-key.seed.raw").write_bytes(seed)
    (keys / "test-key.keypair.raw").write_bytes(seed + pub)
    (keys / "test-key.pkcs8.pem").write_bytes(
        sk.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (keys / "test-key.pub.raw").write_bytes(pub)
    (keys / "test-key.pub.pem").write_bytes(
        sk.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return seed


def write_utf8(receipt: dict, path: Path) -> None:
    path.write_text(json.dumps(receipt, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def phase1() -> None:
    seed = key_files()
    out = HERE / "reference-signed"
    out.mkdir(exist_ok=True)
    contract = CommandContract.model_validate(json.loads((HERE / "contract.json").read_text("utf-8")))
    # The published package cannot load its own schemas, so parse the policy
    # with its duplicate-key-rejecting YAML loader directly.
    policy = yaml.load((HERE / "policy.yaml").read_text("utf-8"), Loader=_UniqueKeyLoader)
    decision = evaluate_contract(contract, policy)
    assert decision.decision == "allow", decision

    # 1. success: a real run of `ls -la` in /tmp, signed by the executor itself.
    r = run_contract(contract, decision.policy_profile, policy, private_key_bytes=seed, signing_key_id=KEY_ID)
    assert r["status"] == "success", r
    write_receipt(r, str(out / "success.json"))

    # 2. failed: `ls` of a missing path exits 2.
    failing = contract.model_copy(deep=True)
    failing.commands[0].exec.argv = ["ls", "/tmp/csc-interop-definitely-missing"]
    r = run_contract(failing, decision.policy_profile, policy, private_key_bytes=seed, signing_key_id=KEY_ID)
    assert r["status"] == "failed", r
    write_receipt(r, str(out / "failed.json"))

    # 3. blocked: denied by policy (the CLI path), failed_command_id null.
    denied = contract.model_copy(deep=True)
    denied.commands[0].exec.argv = ["rm", "-rf", "/tmp/x"]
    d = evaluate_contract(denied, policy)
    assert d.decision == "deny", d
    r = _blocked_receipt_dict(denied, d.contract_sha256, d.policy_profile, policy, "; ".join(d.reasons))
    r = sign_receipt(r, private_key_bytes=seed, key_id=KEY_ID, signed_at=SIGNED_AT)
    assert r["failed_command_id"] is None
    write_receipt(r, str(out / "blocked.json"))

    # 4. non-ASCII and control characters in `error`, fixed timestamps.
    r = {
        "receipt_version": "csc.receipt.v0.1",
        "contract_id": contract.contract_id,
        "execution_id": "exec_unicode-0001",
        "contract_sha256": hash_contract(contract),
        "status": "failed",
        "started_at": "2026-11-21T11:59:58.000001+00:00",
        "ended_at": "2026-11-21T11:59:59.999999+00:00",
        "policy_profile": policy["name"],
        "policy_schema_version": policy["policy_schema_version"],
        "policy_sha256": _hash_policy(policy),
        "runner_version": "csc-runner/0.5.2",
        "execution_mode": "local",
        "exit_code": -9,
        "stdout_hash": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "stderr_hash": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "stdout_truncated": True,
        "artifacts": [],
        "effect_summary": {"files_written": 0, "network_used": False, "secrets_used": 0},
        "completed_command_ids": ["ls-workspace"],
        "failed_command_id": "second \u00e9tape",
        "error": "Fehler: Datei \u201eä.txt\u201c fehlt \u2014 日本語 😀 \x00\x01\x07\b\t\n\x0b\f\r\x1b\x1f \x7f \u0085 \u2028 \u2029 \ufeff \"q\" \\ back\\slash /",
    }
    r = sign_receipt(r, private_key_bytes=seed, key_id=KEY_ID, signed_at=SIGNED_AT)
    write_receipt(r, str(out / "error-unicode.json"))
    write_utf8(r, out / "error-unicode.utf8.json")

    resolver = StaticKeyResolver(keys={KEY_ID: (HERE / "keys" / "test-key.pub.raw").read_bytes()})
    for p in sorted(out.glob("*.json")):
        verify_receipt_signature(json.loads(p.read_text("utf-8")), resolver=resolver)
        print(f"reference-signed {p.name}: written and verified by the reference")

    # Expected hashes for the --contract/--policy checks.
    (HERE / "expected-hashes.json").write_text(
        json.dumps(
            {"contract.json": hash_contract(contract), "policy.yaml": _hash_policy(policy)},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )


def phase2() -> None:
    """Verify receipts signed by csc (Rust) with the reference; check that the
    reference signs the same unsigned input to the same bytes."""
    seed = bytes.fromhex(SEED_HEX)
    resolver = StaticKeyResolver(keys={KEY_ID: (HERE / "keys" / "test-key.pub.raw").read_bytes()})
    lines = []
    for p in sorted((HERE / "ours-signed").glob("*.json")):
        signed = json.loads(p.read_text("utf-8"))
        try:
            verify_receipt_signature(signed, resolver=resolver)
            verdict = "VALID"
        except VerificationError as exc:
            verdict = f"INVALID ({exc})"
        unsigned = json.loads((HERE / "unsigned" / p.name).read_text("utf-8"))
        again = sign_receipt(
            unsigned, private_key_bytes=seed, key_id=signed["signature"]["key_id"],
            signed_at=signed["signature"]["signed_at"],
        )
        same = "identical" if again == signed else "DIFFERENT"
        lines.append(f"{p.name}: reference verify_receipt_signature: {verdict}; reference re-sign: {same}")
        print(lines[-1])
    (HERE / "ours-signed" / "REFERENCE-VERIFICATION.txt").write_text(
        "Receipts in this directory were signed by csc (Rust) and checked with the\n"
        "Python reference csc_runner 0.5.2 (regen_reference.py --check-ours):\n\n"
        + "\n".join(lines)
        + "\n"
    )
    if any("INVALID" in l or "DIFFERENT" in l for l in lines):
        sys.exit(1)


if __name__ == "__main__":
    phase2() if "--check-ours" in sys.argv else phase1()
