//! `npk demo` end to end (root: it creates namespaces and attaches XDP; the real-tool lab needs
//! the tools of scripts/setup.sh): a short run on the real tools scores every scenario of the
//! held-out family live, a short synthetic run meets the README's bar, and Ctrl-C leaves
//! nothing behind.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const NPK: &str = env!("CARGO_BIN_EXE_npk");

/// Every lab's namespaces and interface, from the demo's lines that start with "lab:".
#[track_caller]
fn lab_names(output: &str) -> Vec<(Vec<String>, String)> {
    let labs: Vec<_> = output
        .lines()
        .filter(|l| l.starts_with("lab:"))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |w: &str| -> Vec<String> {
                (0..words.len() - 1)
                    .filter(|&i| words[i] == w)
                    .map(|i| words[i + 1].trim_end_matches(',').to_string())
                    .collect()
            };
            (after("namespace"), after("veth").remove(0))
        })
        .collect();
    assert!(!labs.is_empty(), "no lab line in {output}");
    labs
}

#[track_caller]
fn assert_cleaned_up(namespaces: &[String], iface: &str) {
    for netns in namespaces {
        assert!(
            !Path::new("/run/netns").join(netns).exists(),
            "namespace {netns} left behind"
        );
    }
    assert!(
        !Path::new("/sys/class/net").join(iface).exists(),
        "interface {iface} left behind"
    );
    assert!(
        !Path::new("/sys/fs/bpf/npk").join(iface).exists(),
        "pins of {iface} left behind"
    );
}

/// `npk demo ARGS --json --out-dir DIR`, which must succeed: the JSON of its last stdout line
/// (and that line, for messages), its stderr (also printed for the test log) and how long it
/// took.
#[track_caller]
fn run_demo(args: &[&str], dir: &Path) -> (serde_json::Value, String, String, Duration) {
    let start = Instant::now();
    let out = Command::new(NPK)
        .arg("demo")
        .args(args)
        .args(["--json", "--out-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "demo failed: {stderr}");
    eprintln!("{stderr}");
    eprintln!("took {elapsed:?}");
    let last = stdout.lines().last().expect("a JSON line").to_string();
    let v = serde_json::from_str(&last).expect(&last);
    (v, last, stderr, elapsed)
}

/// The files every demo writes into its output directory, none empty.
#[track_caller]
fn assert_outputs(dir: &Path) {
    for file in ["capture.csv", "model.npk", "training.svg", "confusion.svg"] {
        let p = dir.join(file);
        assert!(p.metadata().is_ok_and(|m| m.len() > 0), "{file} missing");
    }
}

#[test]
fn a_short_demo_on_the_real_tools_scores_the_held_out_family_live_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (v, last, stderr, _) = run_demo(
        &["--train-runs", "1", "--capture", "4", "--replay", "4"],
        dir.path(),
    );
    assert_eq!(v["train_seeds"], serde_json::json!([101]), "{last}");
    assert_eq!(v["live_seed"], 201, "{last}");
    // The second family-B run, with attacks dropped, is scored the same way.
    let enforced = &v["enforced"];
    assert_eq!(enforced["seed"], 202, "{last}");
    assert!(enforced["packets"].as_u64().unwrap() > 1_000, "{last}");
    assert!(
        enforced["attack_drop_rate"].as_f64().unwrap() > 0.5,
        "{last}"
    );
    assert!(!enforced["per_scenario"].as_array().unwrap().is_empty());
    let per_class = v["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 5, "{last}");
    // Every attack class and benign traffic were seen live.
    for c in per_class {
        assert!(c["support"].as_u64().unwrap() > 0, "{last}");
    }
    let scenarios: Vec<&str> = v["per_scenario"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    for s in [
        "web-small",
        "bulk-tcp",
        "syn-flood",
        "udp-flood",
        "icmp-flood",
        "scan-syn",
    ] {
        assert!(scenarios.contains(&s), "{s} not scored live: {last}");
    }
    let f = |k: &str| v[k].as_f64().unwrap();
    // Benign packets are a minority of the live run: a model that learned nothing scores far
    // below this (the held-out numbers themselves are what the demo reports, not a bar).
    assert!(f("accuracy") >= 0.5, "{last}");
    assert!(f("packets") > 1_000.0, "{last}");
    assert!(stderr.contains("held out (family B") && stderr.contains("ns/pkt"));
    assert!(stderr.contains("enforced (family B, seed 202, attacks dropped)"));
    assert_outputs(dir.path());
    let labs = lab_names(&stderr);
    assert_eq!(labs.len(), 3, "a training run and two live runs");
    for (namespaces, iface) in &labs {
        assert_eq!(namespaces.len(), 2, "clients and servers");
        assert_cleaned_up(namespaces, iface);
    }
}

#[test]
fn a_short_synthetic_demo_meets_the_bar_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let (v, last, stderr, elapsed) = run_demo(
        &["--lab", "synthetic", "--capture", "5", "--replay", "5"],
        dir.path(),
    );
    // Release (CI) runs take ~13 s; unoptimized training is ten times slower.
    if !cfg!(debug_assertions) {
        assert!(elapsed < Duration::from_secs(60), "demo too slow");
    }

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

    assert_outputs(dir.path());
    let svg = std::fs::read_to_string(dir.path().join("confusion.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("port_scan"));
    // The live table printed rows with accuracy and ns per packet.
    assert!(stderr.contains("ns/pkt") && stderr.contains("accuracy"));
    let (namespaces, iface) = lab_names(&stderr).remove(0);
    assert_cleaned_up(&namespaces, &iface);
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
    assert!(first.starts_with("capture: lab run 1 of 4"), "{first}");
    // The lab line comes once its servers listen.
    let second = lines.next().unwrap().unwrap();
    let (namespaces, iface) = lab_names(&second).remove(0);
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
    assert_cleaned_up(&namespaces, &iface);
}
