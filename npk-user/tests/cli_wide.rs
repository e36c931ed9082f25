//! A model wider than the kernel's limits, from IDX files as MNIST ships them: trained with a
//! test file of its own, quantized, evaluated in userspace, and refused by `attach` and `push`
//! with the limit it breaks.

use std::{
    ffi::OsStr,
    io::Write,
    path::Path,
    process::{Command, Output},
};

fn npk(args: &[impl AsRef<OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npk"))
        .args(args)
        .output()
        .expect("run npk")
}

/// Images of `SIDE x SIDE` pixels (144 inputs: wider than the kernel's 128).
const SIDE: usize = 12;

/// `count` images whose class (0..3) is the third of the image that is bright, with noise,
/// and their labels, as IDX files `{prefix}-images-idx3-ubyte` and `-labels-idx1-ubyte` in
/// `dir`, gzip-compressed when `gz`.
fn write_idx(dir: &Path, prefix: &str, count: usize, seed: u64, gz: bool) {
    let mut rng = npk::rng::Rng::new(seed);
    let mut next = move || rng.next_u64();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for w in [0x803u32, count as u32, SIDE as u32, SIDE as u32] {
        images.extend_from_slice(&w.to_be_bytes());
    }
    for w in [0x801u32, count as u32] {
        labels.extend_from_slice(&w.to_be_bytes());
    }
    for _ in 0..count {
        let class = (next() % 3) as usize;
        labels.push(class as u8);
        for p in 0..SIDE * SIDE {
            let bright = (p / SIDE) / (SIDE / 3) == class;
            images.push(if bright { 150 } else { 0 } + (next() % 100) as u8);
        }
    }
    let suffix = if gz { ".gz" } else { "" };
    for (kind, bytes) in [("images-idx3", images), ("labels-idx1", labels)] {
        let path = dir.join(format!("{prefix}-{kind}-ubyte{suffix}"));
        let bytes = if gz {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap()
        } else {
            bytes
        };
        std::fs::write(path, bytes).unwrap();
    }
}

#[track_caller]
fn stdout_of(args: &[&str]) -> String {
    let out = npk(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_wide_idx_model_trains_evaluates_and_the_kernel_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "train", 600, 1, true);
    write_idx(dir.path(), "t10k", 150, 2, false);
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (train, test, model) = (
        path("train-images-idx3-ubyte.gz"),
        path("t10k-images-idx3-ubyte"),
        path("wide.npk"),
    );
    let stdout = stdout_of(&[
        "train",
        "--data",
        &train,
        "--test-data",
        &test,
        "--hidden",
        "200,64",
        "--epochs",
        "5",
        "--batch",
        "32",
        "--lr",
        "0.001",
        "--out",
        &model,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    // Every t10k row scored, none of the training file's.
    assert_eq!(report["test_samples"], 150);
    let (float, int8) = (
        report["float_accuracy"].as_f64().unwrap(),
        report["quantized_accuracy"].as_f64().unwrap(),
    );
    assert!(float > 0.9 && (float - int8).abs() <= 0.02, "{report}");

    let eval: serde_json::Value = serde_json::from_str(
        stdout_of(&["eval", "--model", &model, "--test-data", &test, "--json"])
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(eval["quantized_accuracy"], report["quantized_accuracy"]);

    let inspect = stdout_of(&["inspect", &model]);
    let limit = "hidden layer 1 has width 200: must be 1..=128 (the kernel's MAX_WIDTH)";
    assert!(
        inspect.contains(&format!("too large for the kernel: {limit}")),
        "{inspect}"
    );
    for command in [
        &["attach", "--iface", "lo", "--model", &model][..],
        &["push", "--iface", "lo", "--model", &model],
    ] {
        let out = npk(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            format!(
                "npk: error: the model is 144-200-64-3, which the kernel cannot hold: {limit} (it \
                 trains, quantizes and evaluates in userspace: `npk eval`)"
            )
        );
    }
}

#[test]
fn mismatched_idx_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_idx(dir.path(), "a", 20, 1, false);
    write_idx(dir.path(), "b", 19, 1, false);
    // a's images with b's labels: 20 images, 19 labels.
    std::fs::rename(
        dir.path().join("b-labels-idx1-ubyte"),
        dir.path().join("a-labels-idx1-ubyte"),
    )
    .unwrap();
    let images = dir.path().join("a-images-idx3-ubyte");
    let out = npk(&["train", "--data", images.to_str().unwrap(), "--epochs", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "npk: error: {} holds 20 images but {} holds 19 labels",
            images.display(),
            dir.path().join("a-labels-idx1-ubyte").display()
        )
    );
}
