"""One Markdown table row per kernel from the guest's output (see guest.sh), or the header.

    python3 scripts/vm/summary.py --header
    python3 scripts/vm/summary.py SUITE RELEASE OUT_LOG      (exit 1 if a check failed)
"""
import json
import re
import sys

COLUMNS = ["picked", "verify-16,16", "verify-32,32", "insns", "kernel", "serve"]


def header():
    print("| kernel | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")


def cell(name, lines, rc):
    """What a check showed, in a few words."""
    text = "\n".join(lines)
    if rc != 0:
        # The error's first line says why (npk prints `npk: error: ...` and, for a refused
        # program, the verifier's last lines; tests `panicked at`).
        m = re.search(r"npk: error: .*refused (\w+).*BPF_PROG_LOAD failed: (.*?) \(os error.*\n"
                      r"verifier log \(last lines\):\n(.*)", text)
        if m:
            return f"FAIL: {m.group(1)} refused ({m.group(2)}): {m.group(3).strip()}"[:200].replace("|", "/")
        for pattern in (r"npk: error: (.*)", r"Error: (.*)", r"panicked at [^\n]*\n(.*)", r"test result: (.*)"):
            m = re.search(pattern, text)
            if m:
                return "FAIL: " + m.group(1).strip()[:160].replace("|", "/")
        return f"FAIL (exit {rc})"
    if name == "picked":  # verify-16,16's strace lines
        # v4-probe 3 (a descriptor: v4 accepted) or v4-probe -1 EINVAL; program NAME...
        probe = [l.split(" ", 1)[1] for l in lines if l.startswith("v4-probe ")]
        programs = [l.split(" ", 1)[1] for l in lines if l.startswith("program ")]
        cpu = "?" if not probe else ("v3" if probe[0].startswith("-1") else "v4")
        return f"{cpu}: " + ", ".join(programs)
    if name.startswith("verify"):
        r = json.loads([l for l in lines if l.startswith("{")][-1])
        return f"{r['mismatches']} mismatches, {r['errors']} errors ({r['packets']})"
    if name == "insns":
        return f"{json.loads([l for l in lines if l.startswith('{')][-1])['verified_insns']:,}"
    passed = re.findall(r"test result: ok\. (\d+) passed; 0 failed; \d+ ignored; \d+ measured; (\d+) filtered", text)
    return "{} passed ({} skipped)".format(*passed[-1]) if passed else "ok"


def row(suite, release, path):
    checks, outputs, current, lines = {}, {}, None, []
    for line in open(path, errors="replace"):
        line = line.rstrip("\r\n")
        if line.startswith("npk-vm: run "):
            current, lines = line.split(" ", 2)[2], []
        elif line.startswith("npk-vm: rc ") and current:
            rc = int(line.rsplit(" ", 1)[1])
            checks[current] = (cell(current, lines, rc), rc)
            outputs[current] = (lines, rc)
            current = None
        elif current:
            lines.append(line)
    if current:  # the VM ended (timeout, crash) inside this check: say how far it got
        ok = sum(1 for l in lines if re.match(r"test \S+ \.\.\. ok", l))
        checks[current] = (f"unfinished ({ok} tests ok before the VM ended)" if ok else "unfinished", 1)
    if "verify-16,16" in checks:
        lines, rc = outputs["verify-16,16"]
        checks["picked"] = (cell("picked", lines, 0), 0)
    # Below 5.18 the server's tests are not run (it needs bpf_xdp_load_bytes), and the
    # kernel reports no verified-instruction count (5.16).
    old_kernel = tuple(int(x) for x in re.findall(r"\d+", release)[:2]) < (5, 18)
    absent = ("n/a (< 5.18)", 0) if old_kernel else ("not run", 1)
    cells = [checks.get(c, absent if c in ("insns", "serve") else ("not run", 1)) for c in COLUMNS]
    print(f"| {release} ({suite}) | " + " | ".join(c for c, _ in cells) + " |")
    return all(rc == 0 for _, rc in cells)


if __name__ == "__main__":
    if sys.argv[1] == "--header":
        header()
    else:
        sys.exit(0 if row(*sys.argv[1:4]) else 1)
