#!/usr/bin/env python3
"""Instructions per request of one callgrind profile, grouped by Swift module (or library).

    Benchmarks/callgrind-modules.py CALLGRIND_OUT REQUESTS [TOP]

Reads a callgrind output file (`--dump-instr=no`, the default; event Ir) and prints, per module:
  self       the instructions executed in the module's own functions, per request (the column adds up to the total);
  + runtime  self plus the Swift stdlib, runtime and libc the module calls directly, callees included (what using
             the module costs, without what it calls of other modules; a runtime call that comes back into a module,
             a deinit run by swift_release, is counted for the caller);
  retain/release  the part of that in swift_retain/swift_release.
Then, for each module, the TOP functions by inclusive cost. A function's module is the first module of its mangled Swift name
($s<len><Module>…), Swift's runtime for swift_* and the runtime's C++ (retain/release on a line of their own),
otherwise the shared object it is in. The kernel is not counted: callgrind sees user space only.
"""
import collections
import re
import subprocess
import sys


def parse(path):
    """Self cost per function, inclusive cost per call edge, the functions' objects, and the total."""
    names = {"fn": {}, "ob": {}}
    self_cost = collections.Counter()
    edges = collections.Counter()
    obj_of = {}
    total = 0
    ob = fn = cfn = None
    cob = None
    pending_call = False

    def name(kind, value):
        m = re.match(r"\((\d+)\)(?: (.*))?", value)
        if not m:
            return value
        key, text = m.group(1), m.group(2)
        if text is not None:
            names[kind][key] = text
        return names[kind][key]

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    edges[(fn, cfn)] += cost
                    pending_call = False
                else:
                    self_cost[fn] += cost
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = name("ob", value)
            elif key == "fn":
                fn = name("fn", value)
                obj_of.setdefault(fn, ob)
                cob = None
            elif key == "cob":
                cob = name("ob", value)
            elif key == "cfn":
                cfn = name("fn", value)
                obj_of.setdefault(cfn, cob or ob)
            elif key == "calls":
                pending_call = True
            elif key in ("summary", "totals"):
                total = int(value.split()[0])
    return self_cost, edges, obj_of, total


def module_of(symbol, obj):
    if symbol in ("swift_retain", "swift_release", "swift_bridgeObjectRetain", "swift_bridgeObjectRelease",
                  "swift_retain_n", "swift_release_n", "swift_unknownObjectRetain", "swift_unknownObjectRelease"):
        return "Swift runtime: retain/release"
    if symbol.startswith("swift_") or symbol.startswith("_swift_"):
        return "Swift runtime: other"
    m = re.match(r"\$s(\d+)", symbol)
    if m:
        length = int(m.group(1))
        start = 2 + len(m.group(1))
        module = symbol[start:start + length]
        return "Swift stdlib" if module == "Swift" else module
    if symbol.startswith("$sS") or symbol.startswith("$ss") or symbol.startswith("$sy"):
        return "Swift stdlib"
    if symbol.startswith("$s"):
        return "Swift (thunks, other)"
    if "llhttp" in symbol:
        return "NIOHTTP1 (llhttp, C)"
    if symbol.startswith("c_nio_") or symbol.startswith("CNIO"):
        return "NIO (C shims)"
    base = (obj or "?").rsplit("/", 1)[-1]
    # The runtime's C++ (callgrind shows it demangled), in libswiftCore.so or, with --static-swift-stdlib, in the
    # executable itself.
    if base.startswith("libswift") or ".so" not in base:
        return "Swift runtime: other"
    if base.startswith("libc.so") or base.startswith("libm.so"):
        return "libc"
    if base.startswith("ld-linux"):
        return "ld.so"
    return base


def demangle(symbols):
    try:
        out = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(symbols),
                             capture_output=True, text=True, check=True).stdout.split("\n")
        return dict(zip(symbols, out))
    except (OSError, subprocess.CalledProcessError):
        return {s: s for s in symbols}


RUNTIME = ("Swift stdlib", "Swift runtime: retain/release", "Swift runtime: other", "Swift (thunks, other)",
           "libc", "ld.so")


def is_runtime(module):
    return module in RUNTIME or module.startswith("libswift")


def main():
    path, requests = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    self_cost, edges, obj_of, total = parse(path)
    if not total:
        total = sum(self_cost.values())
    functions = set(self_cost) | {c for _, c in edges} | {f for f, _ in edges}
    module = {fn: module_of(fn, obj_of.get(fn)) for fn in functions}
    by_self = collections.Counter()
    for fn, cost in self_cost.items():
        by_self[module[fn]] += cost
    # The runtime (stdlib, retain/release, allocation, libc) a module calls directly, callees included.
    runtime_of = collections.Counter()
    retain_of = collections.Counter()
    inclusive_fn = collections.Counter()
    for (caller, callee), cost in edges.items():
        if caller != callee:
            inclusive_fn[callee] += cost
        if not is_runtime(module[caller]) and is_runtime(module[callee]):
            runtime_of[module[caller]] += cost
            if module[callee] == "Swift runtime: retain/release":
                retain_of[module[caller]] += cost
    print(f"total: {total:,} instructions, {total / requests:,.0f} per request ({requests:,.0f} requests)")
    print()
    print("by module: `self` is the module's own functions (the column adds up to the total); `+ runtime` adds the")
    print("Swift stdlib, runtime (retain/release, allocation, metadata) and libc it calls directly, callees included;")
    print("`retain/release` is the part of that in swift_retain/swift_release.")
    print()
    print(f"{'module':<30} {'self / req':>11} {'self %':>7} {'+ runtime / req':>16} {'%':>6} {'retain/release':>15}")
    mods = sorted(by_self, key=lambda m: -(by_self[m] + runtime_of[m]))
    for mod in mods:
        own = by_self[mod]
        with_runtime = own + runtime_of[mod]
        if with_runtime / total < 0.003:
            continue
        shown = f"{with_runtime / requests:>16,.0f} {100 * with_runtime / total:>5.1f}%" if not is_runtime(mod) else \
            f"{'':>16} {'':>6}"
        retain = f"{retain_of[mod] / requests:>15,.0f}" if not is_runtime(mod) else ""
        print(f"{mod:<30} {own / requests:>11,.0f} {100 * own / total:>6.1f}% {shown} {retain}")
    print()
    interesting = [m for m in mods if not is_runtime(m) and m not in ("NIOPosix",)]
    best = []
    for mod in interesting[:10]:
        candidates = [fn for fn in functions if module[fn] == mod and not fn.endswith("'2")]
        candidates.sort(key=lambda fn: -inclusive_fn[fn])
        best += [(mod, fn) for fn in candidates[:top] if inclusive_fn[fn] / total >= 0.005]
    names = demangle([fn for _, fn in best])
    print(f"the {top} functions of each module with the highest inclusive cost (callees included; per request, % of"
          " the total):")
    current = None
    for mod, fn in best:
        if mod != current:
            print(f"  {mod}")
            current = mod
        print(f"    {inclusive_fn[fn] / requests:>9,.0f} {100 * inclusive_fn[fn] / total:>5.1f}%  "
              f"{names.get(fn, fn)[:140]}")


if __name__ == "__main__":
    main()
