//! `npk train` / `npk eval` as a user runs them: exit status, messages, `--json` output.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

fn npk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npk"))
        .args(args)
        .output()
        .expect("run npk")
}

/// Runs npk, expects failure with exactly one `npk: error:` line containing `message`.
#[track_caller]
fn fails_with(args: &[&str], message: &str) {
    let out = npk(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "npk {args:?} succeeded; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "npk {args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "npk {args:?} panicked: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "npk {args:?}: {stderr}");
    assert!(stderr.starts_with("npk: error: "), "npk {args:?}: {stderr}");
    assert!(
        stderr.contains(message),
        "npk {args:?}: expected '{message}' in: {stderr}"
    );
}

/// Runs npk, expects success and returns the JSON object on the last line of stdout.
#[track_caller]
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = npk(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "npk {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some stdout");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn iris_args(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--data", data("iris.csv").to_str().unwrap()]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[track_caller]
fn train_fails_with(extra: &[&str], message: &str) {
    let args = iris_args(extra);
    fails_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        message,
    );
}

#[test]
fn bad_training_options_are_one_clear_error() {
    train_fails_with(
        &["--optimizer", "rmsprop"],
        "--optimizer: unknown optimizer 'rmsprop': expected adam or sgd",
    );
    train_fails_with(
        &["--hidden", "16,x"],
        "--hidden: hidden layer list '16,x': 'x' is not a width",
    );
    train_fails_with(
        &["--hidden", ""],
        "--hidden: hidden layer list '': '' is not a width",
    );
    train_fails_with(
        &["--hidden", "16,129"],
        "hidden layer 2 has width 129: must be 1..=128 (the kernel's MAX_WIDTH)",
    );
    train_fails_with(&["--hidden", "8,8,8,8"], "4 hidden layers: at most 3");
    train_fails_with(&["--epochs", "0"], "0 epochs: must be at least 1");
    train_fails_with(&["--batch", "0"], "batch size 0: must be at least 1");
    train_fails_with(
        &["--lr=-0.5"],
        "learning rate -0.5: must be a finite number > 0",
    );
    train_fails_with(&["--test-split", "1"], "test fraction 1 must be in [0, 1)");
    train_fails_with(&["--test-split", "0"], "leaves the test split empty");
}

#[test]
fn bad_data_files_name_file_line_and_column() {
    fails_with(
        &["train", "--data", "/nonexistent.csv"],
        "cannot open /nonexistent.csv: No such file",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b,label\n1,2,0\n3,oops,1\n").unwrap();
    fails_with(
        &["train", "--data", bad.to_str().unwrap()],
        &format!(
            "{}: line 3, column 'b': 'oops' is not a number",
            bad.display()
        ),
    );
    std::fs::write(&bad, "a,b,label\n1,2,0\n3,4,1.5\n").unwrap();
    fails_with(
        &["train", "--data", bad.to_str().unwrap()],
        "line 3, column 'label': label 1.5 is not an integer",
    );
}

#[test]
fn train_json_reports_test_accuracy() {
    let args = iris_args(&[
        "--hidden", "16,16", "--epochs", "60", "--seed", "1", "--json",
    ]);
    let report = json_of(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(report["test_samples"], 30);
    assert_eq!(report["epochs"], 60);
    let acc = report["float_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "float accuracy {acc}");
    assert!(report["train_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn train_prints_epoch_lines_and_a_summary_without_json() {
    let out = npk(&iris_args(&["--epochs", "3"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("epoch 1/3  loss "), "{stdout}");
    assert!(lines[2].starts_with("epoch 3/3  loss "), "{stdout}");
    assert!(stdout.contains("float test accuracy:"), "{stdout}");
}
