"""One Markdown table row per kernel from the guest's output (see guest.sh), or the header.

    python3 scripts/vm/summary.py --header
    python3 scripts/vm/summary.py SUITE RELEASE OUT_LOG SECONDS      (exit 1 if a check failed)

SECONDS: how long the VM ran, boot to power-off.
"""
import re
import sys

COLUMNS = ["loaded (verifier instructions)", "kernel tests", "serve tests", "time"]


def header():
    print("| kernel | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")


# A test's unwrapped LoadError::Refused (Debug): the program, the errno's kind, the log's tail.
TEST_REFUSAL = re.compile(r'refused (\w+)", source: Log \{ io_error: Os \{ code: \d+, kind: (\w+).*?tail: "([^"\\]*)')


def failure(text, rc):
    """Why a check failed, in a few words: npk prints `npk: error: ...` and, for a refused
    program, the verifier's last lines; tests say `panicked at`."""
    refusals = TEST_REFUSAL.findall(text)
    if refusals:
        return "FAIL: " + "; ".join(f"{p} refused ({kind}): {tail}" for p, kind, tail in refusals)
    m = re.search(r"npk: error: .*refused (\w+).*BPF_PROG_LOAD failed: (.*?) \(os error.*\n"
                  r"verifier log \(last lines\):\n(.*)", text)
    if m:
        return f"FAIL: {m.group(1)} refused ({m.group(2)}): {m.group(3).strip()}"[:200]
    for pattern in (r"npk: error: (.*)", r"Error: (.*)", r"panicked at [^\n]*\n(.*)", r"test result: (.*)"):
        m = re.search(pattern, text)
        if m:
            return "FAIL: " + m.group(1).strip()[:160]
    return f"FAIL (exit {rc})"


def tests_cell(text, seconds):
    passed = re.findall(r"test result: ok\. (\d+) passed; 0 failed; \d+ ignored; \d+ measured; (\d+) filtered", text)
    if not passed:
        return "ok"
    n, skipped = passed[-1]
    return f"{n} passed{f' ({skipped} others not run here)' if skipped != '0' else ''}, {seconds} s"


def row(suite, release, path, vm_seconds):
    checks, current, lines = {}, None, []
    for line in open(path, errors="replace"):
        line = line.rstrip("\r\n")
        if line.startswith("npk-vm: run "):
            current, lines = line.split(" ", 2)[2], []
        elif line.startswith("npk-vm: rc ") and current:
            _, _, _, rc, seconds = line.split(" ")
            checks[current] = ("\n".join(lines), int(rc), int(seconds))
            current = None
        elif current:
            lines.append(line)
    cells = {}
    if current:  # the VM ended (timeout, crash) inside this check: say how far it got
        ok = sum(1 for l in lines if re.match(r"test \S+ \.\.\. ok", l))
        checks[current] = ("\n".join(lines), None, None)
        cells[current] = (f"unfinished ({ok} tests ok before the VM ended)", 1)
    for name, (text, rc, seconds) in checks.items():
        if name in cells:
            continue
        if rc != 0:
            cells[name] = (failure(text, rc), 1)
        else:
            cells[name] = (tests_cell(text, seconds), 0)
    kernel_text = checks.get("kernel", ("",))[0]
    # Kernels before 5.16 do not report the verifier's count: "?".
    loaded = [f"{name} {int(insns):,}" if insns != "?" else name for name, insns in
              re.findall(r"npk-loaded: (\S+) cpu v\d insns (\d+|\?)", kernel_text)]
    loaded += [f"{p} refused" for p, _, _ in TEST_REFUSAL.findall(kernel_text)]
    cpu = re.search(r"npk-loaded: \S+ cpu (v\d)", kernel_text)
    old = tuple(int(x) for x in re.findall(r"\d+", release)[:2])
    kernel_cell = cells.get("kernel", ("not run", 1))
    # The other kernel checks (see checks.sh) join its cell: their names, or why they failed.
    extra = [(name, cells.get(name, ("not run", 1))) for name in ("kernel-log", "push-bounded")]
    if kernel_cell[1] == 0 and all(rc == 0 for _, (_, rc) in extra):
        kernel_cell = (kernel_cell[0] + "; " + ", ".join(name for name, _ in extra) + " passed", 0)
    else:
        failed = [f"{name}: {cell}" for name, (cell, rc) in [("kernel", kernel_cell)] + extra if rc]
        kernel_cell = ("; ".join(failed), 1)
    loaded_text = (f"{cpu.group(1)}: " if cpu else "") + ", ".join(loaded) if loaded else "?"
    # The wider bounded programs (< 5.17), checked by `npk verify` (see checks.sh).
    verified = [(name.removeprefix("verify-").replace("-", " "), cells[name]) for name in cells
                if name.startswith("verify-")]
    if verified:
        loaded_text += "; npk verify " + ", ".join(
            f"{what} {'0 mismatches' if rc == 0 else cell}" for what, (cell, rc) in verified)
    loaded_cell = (loaded_text, max([0] + [rc for _, (_, rc) in verified]))
    refused = cells.get("serve-refused")
    serve_default = ("n/a (< 5.18)", 0) if old < (5, 18) else ("not run", 1)
    if refused:
        serve_default = ("n/a (< 5.18): refused, naming the helpers" if refused[1] == 0
                         else refused[0], refused[1])
    serve_cell = cells.get("serve", serve_default)
    row_cells = [loaded_cell, kernel_cell, serve_cell, (f"{vm_seconds} s", 0)]
    print(f"| {release} ({suite}) | " + " | ".join(c.replace("|", "/") for c, _ in row_cells) + " |")
    return all(rc == 0 for _, rc in row_cells)


if __name__ == "__main__":
    if sys.argv[1] == "--header":
        header()
    else:
        sys.exit(0 if row(*sys.argv[1:5]) else 1)
