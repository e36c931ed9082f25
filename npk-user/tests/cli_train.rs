//! `npk train` / `npk eval` as a user runs them: exit status, messages, `--json` output.

mod cli_common;

use std::{ffi::OsStr, path::Path};

use cli_common::{data, npk};

use tempfile::TempDir;

/// Expects failure with exactly one `npk: error:` line containing `message`.
#[track_caller]
fn fails_with(args: &[impl AsRef<OsStr>], message: &str) {
    let out = npk(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("npk: error: "), "{stderr}");
    assert!(
        stderr.contains(message),
        "expected '{message}' in: {stderr}"
    );
}

/// Expects success and returns the JSON object on the last line of stdout.
#[track_caller]
fn json_of(args: &[impl AsRef<OsStr>]) -> serde_json::Value {
    let out = npk(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("some stdout");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

/// `npk train --data <csv> --out <dir>/model.npk` followed by `extra`.
fn train_args(dir: &TempDir, csv: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "train".to_string(),
        "--data".into(),
        csv.display().to_string(),
        "--out".into(),
        dir.path().join("model.npk").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A flag's value is checked when the flags are read (clap's usage error, exit 2, naming the
/// flag); what depends on the data (widths against the quantizer's limits) when training.
#[test]
fn bad_training_options_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let iris = data("iris.csv");
    for (extra, message) in [
        (
            &["--optimizer", "rmsprop"][..],
            "error: invalid value 'rmsprop' for '--optimizer <OPTIMIZER>': unknown optimizer \
             'rmsprop': expected adam or sgd",
        ),
        (
            &["--hidden", "16,x"],
            "error: invalid value '16,x' for '--hidden <W1,W2,...>': hidden layer list '16,x': \
             'x' is not a width",
        ),
        (
            &["--hidden", ""],
            "error: invalid value '' for '--hidden <W1,W2,...>': hidden layer list '': '' is not \
             a width",
        ),
    ] {
        let out = npk(&train_args(&dir, &iris, extra));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr
                .lines()
                .next()
                .is_some_and(|l| l.starts_with(message)),
            "expected '{message}' in: {stderr}"
        );
    }
    for (extra, message) in [
        (
            &["--hidden", "16,4097"][..],
            "hidden layer 2 has width 4097: must be 1..=4096 (the widest layer npk quantizes)",
        ),
        (&["--hidden", "8,8,8,8"], "4 hidden layers: at most 3"),
    ] {
        fails_with(&train_args(&dir, &iris, extra), message);
    }
    assert!(!dir.path().join("model.npk").exists());
}

#[test]
fn bad_data_files_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    fails_with(
        &train_args(&dir, Path::new("/nonexistent.csv"), &[]),
        "cannot open /nonexistent.csv: No such file",
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b,label\n1,2,0\n3,oops,1\n").unwrap();
    let message = format!(
        "{}: line 3, column \"b\": \"oops\" is not a number",
        bad.display()
    );
    fails_with(&train_args(&dir, &bad, &[]), &message);
    std::fs::write(&bad, "a,b,label\n1,2,0\n3,4,1.5\n").unwrap();
    fails_with(
        &train_args(&dir, &bad, &[]),
        "line 3, column \"label\": label \"1.5\" is not an integer",
    );
}

#[test]
fn train_prints_epoch_lines_and_a_summary_without_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = npk(&train_args(&dir, &data("iris.csv"), &["--epochs", "3"]));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("epoch 1/3  loss "), "{stdout}");
    assert!(lines[2].starts_with("epoch 3/3  loss "), "{stdout}");
    assert!(stdout.contains("float test accuracy:"), "{stdout}");
    assert!(stdout.contains("quantized test accuracy:"), "{stdout}");
}

#[test]
fn train_then_eval_round_trip_on_iris() {
    let dir = tempfile::tempdir().unwrap();
    let iris = data("iris.csv");
    let args = [
        "--hidden", "16,16", "--epochs", "60", "--seed", "1", "--json",
    ];
    let report = json_of(&train_args(&dir, &iris, &args));
    assert_eq!(report["test_samples"], 30);
    assert_eq!(report["epochs"], 60);
    for key in ["float_accuracy", "quantized_accuracy"] {
        let acc = report[key].as_f64().unwrap();
        assert!(acc >= 0.9, "{key} {acc}");
    }
    assert!(report["train_seconds"].as_f64().unwrap() > 0.0);

    let model = dir.path().join("model.npk");
    assert_eval_scores(&model, &iris, 0.9);
}

/// `npk eval --json` of `model` on the 150 iris rows: float and int8 accuracy and their
/// agreement all at least `min`.
fn assert_eval_scores(model: &std::path::Path, iris: &std::path::Path, min: f64) {
    let scores = json_of(&[
        "eval".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--data".as_ref(),
        iris.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(scores["samples"], 150);
    for key in ["float_accuracy", "quantized_accuracy", "agreement"] {
        let v = scores[key].as_f64().unwrap();
        assert!(v >= min, "{key} {v}");
    }
}

/// `--hidden none`: the linear baseline (multinomial logistic regression), one dense layer that
/// quantizes, loads in `npk eval` and shows in `npk inspect` like any model.
#[test]
fn a_model_without_hidden_layers_trains_evaluates_and_inspects() {
    let dir = tempfile::tempdir().unwrap();
    let iris = data("iris.csv");
    let args = [
        "--hidden", "none", "--epochs", "100", "--seed", "1", "--json",
    ];
    let report = json_of(&train_args(&dir, &iris, &args));
    for key in ["float_accuracy", "quantized_accuracy"] {
        let acc = report[key].as_f64().unwrap();
        assert!(acc >= 0.85, "{key} {acc}");
    }
    let model = dir.path().join("model.npk");
    assert_eval_scores(&model, &iris, 0.85);
    let out = npk(&["inspect".as_ref(), model.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One layer, inputs straight to the 3 classes: 4 inputs x 3 classes + 3 biases.
    assert!(stdout.contains("3x4"), "{stdout}");
    assert!(stdout.contains("15 parameters"), "{stdout}");
}

#[test]
fn eval_rejects_unusable_models_and_mismatched_files() {
    let dir = tempfile::tempdir().unwrap();
    let iris = data("iris.csv");
    let out = npk(&train_args(&dir, &iris, &["--epochs", "2"]));
    assert!(out.status.success());
    let model = dir.path().join("model.npk");
    let eval = |model: &Path, csv: &Path| {
        vec![
            "eval".to_string(),
            "--model".into(),
            model.display().to_string(),
            "--data".into(),
            csv.display().to_string(),
        ]
    };

    let missing = dir.path().join("missing.npk");
    fails_with(
        &eval(&missing, &iris),
        "missing.npk: cannot read: No such file",
    );
    let junk = dir.path().join("junk.npk");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    fails_with(&eval(&junk, &iris), "junk.npk: not an npk model file");

    let csv = dir.path().join("other.csv");
    std::fs::write(&csv, "a,b,label\n1,2,0\n3,4,1\n").unwrap();
    fails_with(&eval(&model, &csv), "other.csv: 2 feature columns, but ");
    let header = "sepal_length_cm,sepal_width_cm,petal_width_cm,petal_length_cm,label";
    std::fs::write(&csv, format!("{header}\n1,2,3,4,0\n1,2,3,4,1\n")).unwrap();
    fails_with(
        &eval(&model, &csv),
        "line 1: column 3 is 'petal_width_cm', but ",
    );
    let header = "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,label";
    std::fs::write(&csv, format!("{header}\n1,2,3,4,0\n1,2,3,4,3\n")).unwrap();
    fails_with(
        &eval(&model, &csv),
        "other.csv: line 3, column \"label\": label 3, but the model predicts only 3 classes",
    );
}
