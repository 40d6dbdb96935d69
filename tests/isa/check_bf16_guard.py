#!/usr/bin/python3
"""The AVX-512 path runs on CPUs without AVX512-BF16 (Ice Lake, Cascade Lake): only the BF16
weight kernels may hold its instructions, and they are chosen only where the CPU has it
(Avx512HasBf16). This disassembles a binary and fails if any function whose name does not
say Bf16 contains vdpbf16ps, vcvtne2ps2bf16 or vcvtneps2bf16 (the compiler emitting them
elsewhere, or a new kernel using them without a guard, would crash those CPUs with SIGILL).

usage: check_bf16_guard.py BINARY
"""
import re
import subprocess
import sys

BF16_OPS = re.compile(r"\t(vdpbf16ps|vcvtne2ps2bf16|vcvtneps2bf16)\b")
FUNC = re.compile(r"^[0-9a-f]+ <(.*)>:$")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dis = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", sys.argv[1]], check=True,
                         capture_output=True, text=True).stdout
    func, holders = None, {}
    for line in dis.splitlines():
        m = FUNC.match(line)
        if m:
            func = m.group(1)
        elif func is not None and BF16_OPS.search(line):
            holders[func] = holders.get(func, 0) + 1
    unguarded = sorted(f for f in holders if "Bf16" not in f)
    guarded = len(holders) - len(unguarded)
    if guarded == 0:
        # The BF16 kernels exist; finding none means the disassembly was not read right.
        print(f"{sys.argv[1]}: no AVX512-BF16 instruction found at all (expected the Bf16 kernels')")
        return 1
    for f in unguarded:
        print(f"{sys.argv[1]}: {holders[f]} AVX512-BF16 instruction(s) in {f}, which is not a Bf16 kernel")
    print(f"{guarded} Bf16 kernel function(s) hold AVX512-BF16 instructions, {len(unguarded)} other(s)")
    return 1 if unguarded else 0


if __name__ == "__main__":
    sys.exit(main())
