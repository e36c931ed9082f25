//! The real-tool traffic lab (`npk gen --lab tools`, root, the tools of scripts/setup.sh): a
//! short seeded run writes a pcap, a manifest and kernel-recorded features that agree with
//! `npk features --manifest` on the pcap, and leaves no namespace, process or file behind.

use std::{collections::BTreeMap, path::Path, process::Command};

fn npk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_npk"))
        .args(args)
        .output()
        .expect("running npk")
}

/// Label column counts of a feature CSV.
fn label_counts(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut counts = BTreeMap::new();
    for line in text.lines().skip(1) {
        let label = line.rsplit(',').next().unwrap().to_string();
        *counts.entry(label).or_insert(0) += 1;
    }
    counts
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn a_short_seeded_run_records_pcap_manifest_and_features_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, csv, manifest) = (
        dir.path().join("run.pcap"),
        dir.path().join("run.csv"),
        dir.path().join("run.json"),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_npk"))
        .args([
            "gen",
            "--lab",
            "tools",
            "--tools",
            "web-small,ping,syn-flood,scan-syn",
            "--seed",
            "5",
            "--family",
            "a",
            "--seconds",
            "3",
            "--json",
        ])
        .arg("--pcap")
        .arg(&pcap)
        .arg("--out")
        .arg(&csv)
        .spawn()
        .expect("running npk gen");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "npk gen failed");

    assert!(std::fs::metadata(&pcap).unwrap().len() > 24, "empty pcap");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let scenarios = m["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 4);
    for s in scenarios {
        assert!(
            s["packets"].as_u64().unwrap() > 0,
            "no packet from {}",
            s["scenario"]
        );
        assert!(!s["sources"].as_array().unwrap().is_empty());
    }
    let syn = scenarios
        .iter()
        .find(|s| s["scenario"] == "syn-flood")
        .unwrap();
    assert_eq!(syn["label"], 1);
    assert_eq!(syn["settings"]["tool"], "hping3");

    let kernel = label_counts(&csv);
    assert_eq!(
        kernel.keys().cloned().collect::<Vec<_>>(),
        ["0", "1", "3"],
        "benign, syn_flood and port_scan rows"
    );
    let from_pcap = dir.path().join("pcap.csv");
    let features = npk(&[
        "features",
        "--pcap",
        pcap.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--out",
        from_pcap.to_str().unwrap(),
    ]);
    assert!(
        features.status.success(),
        "{}",
        String::from_utf8_lossy(&features.stderr)
    );
    let pcap_counts = label_counts(&from_pcap);
    assert_eq!(
        pcap_counts.keys().collect::<Vec<_>>(),
        kernel.keys().collect::<Vec<_>>()
    );
    for (label, n) in &kernel {
        // tcpdump and the kernel see the same ingress; a packet or two may fall either side of
        // tcpdump's start and stop.
        let p = pcap_counts[label];
        assert!(
            p.abs_diff(*n) <= n / 20 + 5,
            "label {label}: kernel {n}, pcap {p}"
        );
    }

    // Nothing left: namespaces of the npk process, its work directory, its tools.
    let prefix = format!("npkd-{pid}-");
    let netns: Vec<_> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(netns.is_empty(), "namespaces left: {netns:?}");
    let work = format!("npk-lab-{pid}-");
    assert!(processes_with(&work).is_empty(), "nginx left");
    let server = m["server"].as_str().unwrap();
    let left = processes_with(server);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(
        !std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&work)),
        "work directory left"
    );
}

#[test]
fn sigterm_mid_run_removes_the_namespaces_and_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, csv) = (dir.path().join("run.pcap"), dir.path().join("run.csv"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_npk"))
        .args([
            "gen",
            "--lab",
            "tools",
            "--tools",
            "web-small,ping,syn-flood",
        ])
        .args(["--seed", "9", "--seconds", "30", "--json", "--pcap"])
        .arg(&pcap)
        .arg("--out")
        .arg(&csv)
        .spawn()
        .expect("running npk gen");
    let pid = child.id();
    let server = loop {
        // The server's address is in dnsmasq's command line once the servers run.
        // This run's own dnsmasq (its pid file is in the run's work directory): the other
        // tests of this file run labs at the same time.
        let own = format!("npk-lab-{pid}-");
        if !processes_with(&own).is_empty() {
            std::thread::sleep(std::time::Duration::from_secs(3));
            break processes_with(&own)
                .into_iter()
                .find_map(|cmd| {
                    cmd.split("--listen-address=")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
                })
                .expect("dnsmasq runs");
        }
        assert!(child.try_wait().unwrap().is_none(), "npk gen ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted run reports failure");
    assert!(!pcap.exists(), "no pcap of an interrupted run");
    let prefix = format!("npkd-{pid}-");
    let left_netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        })
        .unwrap_or(false);
    assert!(!left_netns, "a namespace was left");
    let left = processes_with(&server);
    assert!(left.is_empty(), "processes left: {left:?}");
}
