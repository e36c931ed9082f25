//! `npk bench train` on shrunken networks: the table's rows, GPU rows only with a GPU, the
//! NumPy column, the ratio and the test accuracies.

use std::{path::Path, process::Command};

#[test]
fn bench_train_times_every_row_beside_numpy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_npk"))
        .current_dir(&root)
        .args([
            "bench",
            "train",
            "--batches",
            "3,256",
            "--small-epochs",
            "2",
            "--large-hidden",
            "40,30",
            "--large-epochs",
            "1",
            "--json",
        ])
        .output()
        .expect("run npk");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(report["train_rows"], 120);
    assert_eq!(report["test_rows"], 30);
    let rows = report["rows"].as_array().unwrap();
    // 2 nets x 2 batches x (train, infer) x (cpu, and gpu where there is one).
    let gpu_here = report["gpu"]["Ok"].is_string();
    if !gpu_here {
        let reason = report["gpu"]["Err"].as_str().unwrap();
        assert!(reason.starts_with("no GPU: "), "{reason}");
    }
    assert_eq!(rows.len(), if gpu_here { 16 } else { 8 });
    let numpy_here = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    for row in rows {
        let rows_per_step = if row["batch"] == 3 { 3 } else { 120 };
        assert_eq!(row["rows_per_step"], rows_per_step, "{row}");
        let device = row["device"].as_str().unwrap();
        // Accuracies on the CPU training rows only: both nets quantize.
        let accuracy = &row["accuracy"];
        if device == "cpu" && row["mode"] == "train" {
            for a in [&accuracy["npk_float"], &accuracy["npk_int8"]["Ok"]] {
                assert!((0.0..=1.0).contains(&a.as_f64().unwrap()), "{row}");
            }
            if numpy_here {
                let a = accuracy["numpy_float"]["Ok"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&a), "{row}");
            }
        } else {
            assert!(accuracy.is_null(), "{row}");
        }
        let t = &row["npk"]["Ok"];
        let (s, rate) = (
            t["seconds_per_epoch"].as_f64().unwrap(),
            t["samples_per_second"].as_f64().unwrap(),
        );
        assert!(
            s > 0.0 && (rate * s - 120.0).abs() < 1e-6 * rate * s,
            "{row}"
        );
        if device == "cpu" && numpy_here {
            let theirs = row["numpy"]["Ok"]["seconds_per_epoch"].as_f64().unwrap();
            let speedup = row["speedup"].as_f64().unwrap();
            assert!((speedup - theirs / s).abs() < 1e-9 * speedup, "{row}");
        }
    }
}

#[test]
fn bench_train_without_numpy_script_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_npk"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args([
            "bench",
            "train",
            "--batches",
            "10",
            "--small-epochs",
            "1",
            "--large-hidden",
            "8",
            "--large-epochs",
            "1",
            "--numpy-script",
            "/nonexistent/mlp.py",
            "--json",
        ])
        .output()
        .expect("run npk");
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cpu = &report["rows"][0];
    assert_eq!(cpu["device"], "cpu");
    let why = cpu["numpy"]["Err"].as_str().unwrap();
    assert!(
        why.starts_with("unavailable: ") && why.contains("/nonexistent/mlp.py"),
        "{why}"
    );
    assert!(cpu["speedup"].is_null());
}
