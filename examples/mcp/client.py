#!/usr/bin/env python3
"""A client of `csc mcp` built on the official MCP Python SDK.

Usage: client.py CSC_BINARY

Builds a scratch workspace (key, policy, contracts), starts `csc mcp` over
stdio and checks, as an agent host would see it: tools/list with schemas,
an allowed run whose receipt `csc verify-receipt` accepts, a denied run
that executes nothing, malformed input followed by a successful call, and
a single-use approval passed through run_contract (used once, then
refused); then, against a second server started with --approver-keyring
and --approvals-required 2, a quorum passed as `approvals`: one approval
is refused, two from distinct approvers run the contract once. Exits
non-zero on the first failed expectation.
"""

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def contract(root, cid, argv, **extra):
    doc = {
        "version": "csc.v0.1",
        "contract_id": cid,
        "intent": "example",
        "actor": {"agent_id": "example-agent", "session_id": "s1",
                  "initiating_user": "dev", "delegation_scope": "example"},
        "commands": [{
            "id": "c1", "exec": {"argv": argv}, "cwd": root,
            "read_paths": [], "write_paths": [], "network": "deny",
            "env_allow": [], "secret_refs": [], "timeout_sec": 20,
            "proposed_effect_type": "observe",
        }],
        "risk_class": "low",
        "approval_mode": "policy_only",
        "justification": "example",
    }
    doc.update(extra)
    return doc


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


async def main(csc):
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.realpath(tmp)
        p = lambda *a: os.path.join(root, *a)
        subprocess.run([csc, "keygen", "--out", p("key.pem"), "--public-out", p("key.pub.pem")],
                       check=True, capture_output=True)
        with open(p("policy.yaml"), "w") as f:
            f.write(f"""policy_schema_version: csc.policy.v0.1
name: mcp-example
allow_commands: [echo, touch]
allowed_effect_types: [observe]
allowed_risk_classes: [low]
max_timeout_sec: 60
network: deny
allow_secret_refs: false
allowed_cwd_prefixes: ["{root}"]
allowed_read_prefixes: ["{root}"]
allowed_write_prefixes: ["{root}/work"]
""")
        server = StdioServerParameters(command=csc, args=[
            "mcp", "--policy", p("policy.yaml"), "--sign", "--signing-key", p("key.pem"),
            "--key-id", "example-1", "--state-dir", p("state"), "--receipt-dir", p("receipts")])
        async with stdio_client(server) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()

                tools = {t.name: t for t in (await session.list_tools()).tools}
                check(set(tools) == {"check_contract", "explain_contract", "run_contract"},
                      "tools/list names the three tools")
                check(all(t.output_schema for t in tools.values()), "every tool has an outputSchema")
                check("contract" in tools["run_contract"].input_schema["properties"],
                      "run_contract's inputSchema takes a contract")

                hello = contract(root, "example-hello", ["echo", "hello from csc"])
                r = await session.call_tool("run_contract", {"contract": hello})
                s = r.structured_content
                check(not r.is_error and s["status"] == "success", "allowed run succeeds")
                check(s["commands"][0]["stdout"] == "hello from csc\n", "bounded stdout returned")
                v = subprocess.run([csc, "verify-receipt", s["receipt_path"], "--public-key",
                                    p("key.pub.pem"), "--key-id", "example-1"], capture_output=True)
                check(v.returncode == 0, "csc verify-receipt accepts the receipt")

                marker = p("marker")
                denied = contract(root, "example-denied", ["touch", marker], risk_class="critical")
                r = await session.call_tool("run_contract", {"contract": denied})
                check(r.is_error and r.structured_content["status"] == "blocked", "denied run is an error")
                check(not os.path.exists(marker), "denied run executed nothing")

                r = await session.call_tool("run_contract", {"contract": hello, "policy": "allow-all"})
                check(r.is_error, "unknown argument refused")
                r = await session.call_tool("check_contract", {"contract": {"version": "csc.v0.1"}})
                check(r.is_error, "invalid contract refused")
                r = await session.call_tool("check_contract", {"contract": hello})
                check(not r.is_error and r.structured_content["decision"] == "allow",
                      "server still serves after malformed input")

                gated = contract(root, "example-gated", ["echo", "approved"],
                                 approval_mode="human_required")
                r = await session.call_tool("run_contract", {"contract": gated})
                check(r.is_error and "needs_approval" in r.structured_content,
                      "needs approval names what to sign off")
                with open(p("gated.json"), "w") as f:
                    json.dump(gated, f)
                subprocess.run([csc, "approve", p("gated.json"), "--signing-key", p("key.pem"),
                                "--key-id", "example-1", "--approver", "alice@example.org",
                                "--out", p("approval.json")], check=True, capture_output=True)
                with open(p("approval.json")) as f:
                    approval = json.load(f)
                r = await session.call_tool("run_contract", {"contract": gated, "approval": approval})
                check(not r.is_error and r.structured_content["status"] == "success",
                      "approved run succeeds")
                r = await session.call_tool("run_contract", {"contract": gated, "approval": approval})
                check(r.is_error and r.structured_content["status"] == "blocked",
                      "single-use approval is refused the second time")
        await quorum(csc, root, p, server)
    print("all MCP client checks passed")


async def quorum(csc, root, p, server):
    """Two approvers (raw Ed25519 seeds) in a keyring; the server needs 2."""
    keys = []
    for who in ("alice", "bob"):
        seed = os.urandom(32)
        with open(p(f"{who}.seed"), "wb") as f:
            f.write(seed)
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
        keys.append({"key_id": f"{who}-k", "public_key": base64.b64encode(public).decode()})
    os.makedirs(p("trusted"))
    with open(p("trusted", "approvers.json"), "w") as f:
        json.dump({"keyring_version": "csc.keyring.v1", "keys": keys}, f)
    gated = contract(root, "example-quorum", ["echo", "two approvers"],
                     approval_mode="human_required")
    with open(p("quorum.json"), "w") as f:
        json.dump(gated, f)
    approvals = []
    for who in ("alice", "bob"):
        subprocess.run([csc, "approve", p("quorum.json"), "--signing-key", p(f"{who}.seed"),
                        "--key-id", f"{who}-k", "--approver", f"{who}@example.org",
                        "--out", p(f"{who}.dsse.json")], check=True, capture_output=True)
        with open(p(f"{who}.dsse.json")) as f:
            approvals.append(json.load(f))
    quorum_server = StdioServerParameters(command=csc, args=server.args + [
        "--approver-keyring", p("trusted", "approvers.json"), "--approvals-required", "2"])
    async with stdio_client(quorum_server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            r = await session.call_tool("run_contract",
                                        {"contract": gated, "approvals": approvals[:1]})
            check(r.is_error and "quorum not met" in r.structured_content["receipt"]["error"],
                  "one approval is not a quorum of 2")
            r = await session.call_tool("run_contract", {"contract": gated, "approvals": approvals})
            check(not r.is_error and r.structured_content["status"] == "success",
                  "two distinct signed approvals run the contract")
            r = await session.call_tool("run_contract", {"contract": gated, "approvals": approvals})
            check(r.is_error and "already been consumed" in r.structured_content["receipt"]["error"],
                  "the same approvals are refused the second time")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: client.py CSC_BINARY")
    asyncio.run(main(os.path.abspath(sys.argv[1])))
