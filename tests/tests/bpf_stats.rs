//! kernel.bpf_stats_enabled, the global switch `npk attach --pin` turns on for the pinned
//! attachments' run-time counters, through the release `npk` binary against the real kernel
//! (root). A test binary of its own: the switch is host-wide, and no other test of this tree
//! pins an attachment while it runs.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Running, npk, trained_model};
use npk::netlab::NetLab;

const SWITCH: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// Where the first pinned attach saves the setting it found.
const SAVED: &str = "/run/npk/bpf_stats_enabled.before";

fn switch() -> String {
    std::fs::read_to_string(SWITCH).unwrap().trim().to_string()
}

#[track_caller]
fn ok(args: &[&str]) {
    let out = Command::new(npk()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "npk {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The switch stays on while a pinned attachment is left anywhere on the host, in this bpffs
/// or in another one (a private mount namespace's, as a container has), and goes back to what
/// the first pinned attach found (and saved) once none is left, whatever foreground
/// attachments run (they hold their own accounting, BPF_ENABLE_STATS) and whatever stale pins
/// (of an interface deleted under its attachment) are left.
#[test]
fn detach_restores_the_switch_only_when_no_pinned_attachment_is_left_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 2);
    let (here, there, foreground) = (
        NetLab::create(1).unwrap(),
        NetLab::create(1).unwrap(),
        NetLab::create(1).unwrap(),
    );
    let attach = |iface: &str| {
        [
            "attach", "--iface", iface, "--model", &model, "--mode", "skb", "--pin",
        ]
        .map(String::from)
    };
    ok(&attach(&here.host_if).each_ref().map(String::as_str));
    let saved = std::fs::read_to_string(SAVED).unwrap().trim().to_string();

    // Another bpffs: a private mount namespace that lives until its stdin closes.
    let npk = npk();
    let script = format!(
        "mount -t bpf bpf /sys/fs/bpf || exit 90
         {npk} {attach} >&2 || exit 91
         echo pinned
         read _
         {npk} detach --iface {iface} >&2",
        npk = npk.display(),
        attach = attach(&there.host_if).join(" "),
        iface = there.host_if,
    );
    let mut other = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(other.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "pinned", "the other namespace's attach");
    let mut fg = Running::start(&[
        "attach",
        "--iface",
        &foreground.host_if,
        "--model",
        &model,
        "--mode",
        "skb",
    ]);
    fg.wait_for("attached to");
    assert_eq!(switch(), "1");
    // Stale pins: an attachment whose interface is deleted (the kernel detaches its link).
    let gone = NetLab::create(1).unwrap();
    let gone_if = gone.host_if.clone();
    ok(&attach(&gone_if).each_ref().map(String::as_str));
    drop(gone);

    ok(&["detach", "--iface", &here.host_if]);
    assert_eq!(
        switch(),
        "1",
        "the pinned attachment in the other bpffs still needs the switch"
    );

    // The other namespace detaches and ends.
    let mut stdin = other.stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    assert!(other.wait().unwrap().success(), "the other detach");
    assert_eq!(
        switch(),
        saved,
        "no pinned attachment left (a foreground one runs, stale pins are left)"
    );
    assert!(!std::path::Path::new(SAVED).exists());
    // The same decided in this bpffs, beside the stale pins.
    let last = NetLab::create(1).unwrap();
    ok(&attach(&last.host_if).each_ref().map(String::as_str));
    assert_eq!(switch(), "1");
    ok(&["detach", "--iface", &last.host_if]);
    assert_eq!(switch(), saved, "stale pins need no switch");
    ok(&["detach", "--iface", &gone_if]);
    fg.signal(libc::SIGINT);
    let (stopped, lines) = fg.exit(Duration::from_secs(10));
    assert!(stopped, "{lines:?}");
}
