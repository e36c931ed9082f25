//! `npk demo` end to end (root: it creates a namespace and attaches XDP): a short run meets the
//! README's bar, and Ctrl-C leaves nothing behind.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const NPK: &str = env!("CARGO_BIN_EXE_npk");

/// The lab's namespace and host interface, from the demo's first line.
#[track_caller]
fn lab_names(first_line: &str) -> (String, String) {
    let words: Vec<&str> = first_line.split_whitespace().collect();
    let after = |w: &str| {
        let i = words.iter().position(|&x| x == w).expect(first_line);
        words[i + 1].trim_end_matches(',').to_string()
    };
    (after("namespace"), after("veth"))
}

#[track_caller]
fn assert_cleaned_up(netns: &str, iface: &str) {
    assert!(
        !Path::new("/run/netns").join(netns).exists(),
        "namespace {netns} left behind"
    );
    assert!(
        !Path::new("/sys/class/net").join(iface).exists(),
        "interface {iface} left behind"
    );
    assert!(
        !Path::new("/sys/fs/bpf/npk").join(iface).exists(),
        "pins of {iface} left behind"
    );
}

#[test]
fn a_short_demo_meets_the_bar_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = Command::new(NPK)
        .args([
            "demo",
            "--json",
            "--capture",
            "5",
            "--replay",
            "5",
            "--out-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    eprintln!("{stderr}");
    // Release (CI) runs take ~13 s; unoptimized training is ten times slower.
    if !cfg!(debug_assertions) {
        assert!(start.elapsed() < Duration::from_secs(60), "demo too slow");
    }

    let last = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(last).expect(last);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "accuracy",
            "attack_drop_rate",
            "benign_drop_rate",
            "packets"
        ]
    );
    let f = |k: &str| v[k].as_f64().unwrap();
    assert!(f("packets") > 10_000.0, "{last}");
    assert!(f("accuracy") >= 0.97, "{last}");
    assert!(f("attack_drop_rate") >= 0.95, "{last}");
    // Packet feature schema v3 (no TTL or TCP window, log-scale ports: what the held-out
    // evaluation on real tools needs) calls up to ~1.1% of the synthetic demo's benign packets
    // a port scan in a 5 s run (10 of ~900; 0 in other runs); v2 dropped none. Open in the
    // traffic issue; the bar keeps a regression beyond that visible.
    assert!(f("benign_drop_rate") <= 0.02, "{last}");

    for file in ["capture.csv", "model.npk", "training.svg", "confusion.svg"] {
        let p = dir.path().join(file);
        assert!(p.metadata().is_ok_and(|m| m.len() > 0), "{file} missing");
    }
    let svg = std::fs::read_to_string(dir.path().join("confusion.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("port_scan"));
    // The live table printed rows with accuracy and ns per packet.
    assert!(stderr.contains("ns/pkt") && stderr.contains("accuracy"));
    let (netns, iface) = lab_names(stderr.lines().next().unwrap());
    assert_cleaned_up(&netns, &iface);
}

#[test]
fn ctrl_c_during_the_capture_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(NPK)
        .args(["demo", "--capture", "60", "--out-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let (netns, iface) = lab_names(&first);
    let second = lines.next().unwrap().unwrap();
    assert!(second.starts_with("capture:"), "{second}");
    // Loading the classifier takes seconds on a busy machine: wait for its pins.
    let pins = Path::new("/sys/fs/bpf/npk").join(&iface);
    let attaching = Instant::now();
    while !pins.exists() {
        assert!(
            attaching.elapsed() < Duration::from_secs(30),
            "never attached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "slow to stop after Ctrl-C"
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_cleaned_up(&netns, &iface);
}
