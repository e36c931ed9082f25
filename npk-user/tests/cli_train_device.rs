//! `npk train --device` and training without `--out` (float only, any layer size).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn iris() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/iris.csv")
}

fn npk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npk"))
        .arg("train")
        .arg("--data")
        .arg(iris())
        .args(args)
        .output()
        .expect("run npk")
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("some stdout");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

#[test]
fn without_out_any_width_trains_and_nothing_is_quantized() {
    let out = npk(&["--hidden", "300,200,150,100", "--epochs", "20", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = last_json(&out);
    assert!(report["quantized_accuracy"].is_null(), "{report}");
    let acc = report["float_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "{report}");
    assert_eq!(report["test_samples"], 30);
}

#[test]
fn with_out_the_quantizer_limits_apply_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.npk");
    let out = npk(&[
        "--hidden",
        "5000",
        "--out",
        model.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "npk: error: hidden layer 1 has width 5000: must be 1..=4096 (the widest layer npk quantizes)"
    );
    assert!(out.stdout.is_empty(), "no epoch ran");
    assert!(!model.exists());
}

/// Without a GPU: one clear error naming what is missing. With one: a trained model.
#[test]
fn device_gpu_trains_or_says_why_not() {
    let out = npk(&["--device", "gpu", "--epochs", "30", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match gpu_offload::gpu_available() {
        Err(reason) => {
            println!("no GPU here ({reason}): checking the error");
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            let reason = reason.to_string();
            let reason = reason.trim_start_matches("GPU unavailable: ");
            assert_eq!(stderr.trim(), format!("npk: error: no GPU: {reason}"));
        }
        Ok(name) => {
            println!("training on {name}");
            assert!(out.status.success(), "{stderr}");
            let acc = last_json(&out)["float_accuracy"].as_f64().unwrap();
            assert!(acc >= 0.9, "GPU-trained accuracy {acc}");
        }
    }
}
