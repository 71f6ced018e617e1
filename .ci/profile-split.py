#!/usr/bin/env python3
"""Split a CPU profile of the commit path into exclusive parts.

docs/benchmarks.md ("The commit path (issue 23)") uses it. Input on stdin,
either

  go tool pprof -traces BINARY cpu.out        (a Go CPU profile), or
  perf script -F period,ip,sym                 (perf record -g -p PID of a gateway)

Each sampled stack goes to the first part in PARTS one of whose patterns
matches one of its frames; stacks that match none are "rest". Hand-written
assembly (P-256 field arithmetic) has no frame pointers, so perf sees only its
leaf: the verify pattern names those leaves too. The last column is the share
without the benchmark's own setup and the in-process simulator.
"""
import re
import sys

PARTS = [
    ("GC", r"^runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|gcStart|gcMarkDone|gcMarkTermination|markroot|gcDrain|scanobject)"),
    ("benchmark setup (signing records, enrolling, tokens)",
     r"(/bridge/sim\.Presign|/bridge/sim\.dialSession|nodetest\.\(\*Node\)\.Enroll|chain\.\(\*harness\)|chain\.record$|device\.SignRecord)"),
    ("node signing (commit votes)", r"(replica\.\(\*nodeCrypto\)\.Sign|ecdsa\.Sign|ecdsa\.signFIPS|ed25519\.Sign)"),
    ("verify (ES256/EdDSA)", r"(^p256|nistec|ecdsa\.Verify|ecdsa\.verify|ed25519\.Verify|ledger\.\(\*Tx\)\.Verify|ledger\.Verify|ledger\.verifySig|VerifyASN1|curve25519-voi)"),
    ("SQLite index", r"(^modernc\.org/|^database/sql|/gateway/index\.)"),
    ("decode (CBOR/COSE)", r"(ledger\.Decode|ledger\.decode|fxamacker/cbor.*(Unmarshal|decode|Decode|valid))"),
    ("encode (CBOR: receipts, blocks)", r"(fxamacker/cbor.*(Marshal|encode)|\.Encode$|ledger\.Encode|ledger\.encode)"),
    ("SHA-256", r"(sha256|ledger\.TxID|MerkleRoot|ledger\.Hash)"),
    ("simulator (in-process load)", r"(/bridge/sim\.|eclipse/paho)"),
    ("fsync (block log, pbft state)", r"(os\.\(\*File\)\.Sync|syscall\.Fsync|syscall\.Fdatasync)"),
    ("syscalls (network, other files)", r"^(syscall\.|internal/runtime/syscall|internal/poll\.)"),
    ("mochi-mqtt (the rest of it)", r"mochi-mqtt"),
    ("scheduler", r"^runtime\.(schedule|findRunnable|park_m|futex|notesleep|stopm|mcall|netpoll|gopark|goready|ready|wakep|startm|runqgrab|stealWork|usleep|osyield)"),
]
KERNEL = "kernel only (no Go frames)"
NOT_GATEWAY = (PARTS[1][0], "simulator (in-process load)")
GO_FRAME = re.compile(r"^(runtime|internal|github\.com|golang\.org|crypto|syscall|net|os|sync|modernc|database|time|bytes|encoding|p256|memeqbody|gcWriteBarrier|aeshash|indexbytebody)([./]|$|\w)")
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600}


def pprof_stacks(text):
    """(seconds, frames) of each stack of `go tool pprof -traces`."""
    for block in text.split("-----------+")[1:]:
        lines = [l.strip() for l in block.split("\n")[1:] if l.strip() and not l.startswith("-")]
        if not lines:
            continue
        m = re.match(r"([\d.]+)(ns|us|µs|ms|s|min|h)\s+(.*)", lines[0])
        if not m:
            continue
        yield float(m.group(1)) * UNITS[m.group(2)], [m.group(3)] + lines[1:]


def perf_stacks(text):
    """(seconds, frames) of each sample of `perf script -F period,ip,sym` (cpu-clock: ns)."""
    for block in text.split("\n\n"):
        lines = [l for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        frames = []
        for l in lines[1:]:
            parts = l.strip().split(None, 1)
            if len(parts) == 2 and not parts[1].startswith("[unknown]"):
                frames.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1]))
        yield int(lines[0].split()[0]) * 1e-9, frames or ["[unknown]"]


def main():
    text = sys.stdin.read()
    stacks = pprof_stacks(text) if "-----------+" in text else perf_stacks(text)
    by = {name: 0.0 for name, _ in PARTS}
    by[KERNEL] = by["rest"] = 0.0
    rest = {}
    total = 0.0
    for v, frames in stacks:
        total += v
        for name, pat in PARTS:
            if any(re.search(pat, f) for f in frames):
                by[name] += v
                break
        else:
            if not any(GO_FRAME.match(f) for f in frames):
                by[KERNEL] += v
            else:
                by["rest"] += v
                leaf = next((f for f in frames if not f.startswith("runtime.")), frames[0])
                rest[leaf] = rest.get(leaf, 0) + v
    if total == 0:
        sys.exit("profile-split: no samples in the input")
    own = total - sum(by[n] for n in NOT_GATEWAY)
    print(f"{total:.2f}s of samples; the node's part without setup and simulator: {own:.2f}s")
    print(f"{'all':>6} {'seconds':>8}  {'part':52} {'node':>6}")
    for name, v in by.items():
        share = "" if name in NOT_GATEWAY else f"{100 * v / own:5.1f}%"
        print(f"{100 * v / total:5.1f}% {v:8.2f}  {name:52} {share:>6}")
    print("largest leaves of the rest:")
    for leaf, v in sorted(rest.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {100 * v / total:5.1f}%  {leaf}")


if __name__ == "__main__":
    main()
