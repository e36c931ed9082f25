//! `npk eval` on data a user has (one class of traffic, labels the model lacks), model files
//! whose values are broken behind a valid checksum, and the int8/float agreement that `npk
//! train` and `npk eval` report.

mod cli_common;

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use cli_common::{data, npk};

use npk::model_file::{HEADER_LEN, ModelFile};
use tempfile::TempDir;

fn iris() -> PathBuf {
    data("iris.csv")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Trains the README's iris model into `dir/model.npk`; returns the `--json` line.
fn train_iris(dir: &TempDir) -> serde_json::Value {
    let out = npk(&[
        "train".as_ref(),
        "--data".as_ref(),
        iris().as_os_str(),
        "--hidden".as_ref(),
        "16,16".as_ref(),
        "--epochs".as_ref(),
        "100".as_ref(),
        "--seed".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
        "--out".as_ref(),
        dir.path().join("model.npk").as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn eval(model: &Path, csv: &Path, json: bool) -> Output {
    let mut args = vec![
        "eval".to_string(),
        "--model".into(),
        model.display().to_string(),
        "--data".into(),
        csv.display().to_string(),
    ];
    if json {
        args.push("--json".into());
    }
    npk(&args)
}

/// The JSON line of a successful `npk eval --json`.
#[track_caller]
fn eval_json(model: &Path, csv: &Path) -> (serde_json::Value, String) {
    let out = eval(model, csv, true);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = text(&out.stdout);
    let json = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (json, stderr)
}

/// Iris' rows of one class, as `npk features --label N` would write a capture of one kind.
fn one_class_csv(dir: &TempDir, class: u32) -> PathBuf {
    let all = std::fs::read_to_string(iris()).unwrap();
    let mut lines = all.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for line in lines.filter(|l| l.ends_with(&format!(",{class}"))) {
        out += line;
        out += "\n";
    }
    let path = dir.path().join(format!("class{class}.csv"));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn eval_scores_one_class_data_with_per_class_metrics() {
    let dir = tempfile::tempdir().unwrap();
    train_iris(&dir);
    let model = dir.path().join("model.npk");
    let csv = one_class_csv(&dir, 2);

    let (json, stderr) = eval_json(&model, &csv);
    assert_eq!(json["samples"], 50);
    assert_eq!(json["min_agreement"], 0.98);
    assert!(!stderr.contains("warning"), "{stderr}");
    for side in ["float", "quantized"] {
        let m = &json[side];
        let confusion = m["confusion"].as_array().unwrap();
        assert_eq!(confusion.len(), 3, "{side}");
        let rows: Vec<u64> = confusion
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_u64().unwrap())
                    .sum()
            })
            .collect();
        assert_eq!(rows, [0, 0, 50], "{side}: only class 2 has rows");
        let right = confusion[2][2].as_u64().unwrap();
        assert_eq!(m["accuracy"].as_f64().unwrap(), right as f64 / 50.0);
        let per_class = m["per_class"].as_array().unwrap();
        let c2 = &per_class[2];
        assert_eq!(
            (c2["class"].as_u64(), c2["support"].as_u64()),
            (Some(2), Some(50))
        );
        assert_eq!(c2["recall"].as_f64().unwrap(), right as f64 / 50.0);
        assert!(c2["f1"].as_f64().unwrap() > 0.8, "{side}: {c2}");
        for c in &per_class[..2] {
            // No rows of classes 0 and 1: recall and F1 are undefined, not 0.
            assert_eq!(c["support"], 0, "{side}: {c}");
            assert!(c["recall"].is_null() && c["f1"].is_null(), "{side}: {c}");
        }
    }

    let out = eval(&model, &csv, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "50 rows of ",
        "float model:",
        "quantized model (the kernel's arithmetic):",
        "class precision    recall        f1   support",
        "true predicted ->",
    ] {
        assert!(stdout.contains(expected), "'{expected}' in:\n{stdout}");
    }
    // Class 0 has no rows: its recall and F1 print as "-" (its precision is "-" too unless a
    // row was predicted as 0), its support as 0.
    let class0 = |l: &&str| {
        let cells: Vec<&str> = l.split_whitespace().collect();
        cells.len() == 5 && cells[0] == "0" && cells[2..] == ["-", "-", "0"]
    };
    assert_eq!(stdout.lines().filter(class0).count(), 2, "{stdout}");
}

#[test]
fn eval_refuses_a_label_the_model_lacks_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    train_iris(&dir);
    let csv = dir.path().join("bad.csv");
    let header = "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm,label";
    std::fs::write(
        &csv,
        format!("{header}\n5,3,1,0.2,1\n5,3,1,0.2,1\n6,3,5,2,7\n"),
    )
    .unwrap();
    let out = eval(&dir.path().join("model.npk"), &csv, false);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "npk: error: {}: line 4, column \"label\": label 7, but the model predicts only 3 \
             classes (0..=2)\n",
            csv.display()
        )
    );
}

/// The model file with the first float weight (layer 0, [0][0]) replaced by `value` and the
/// checksum recomputed: only the value check can refuse it.
fn with_first_weight(model: &Path, value: f32) -> Vec<u8> {
    let mut file = ModelFile::load(model).unwrap();
    const SENTINEL: f32 = 4321.125;
    file.mlp.layers[0].weights[0] = SENTINEL;
    let mut bytes = file.to_bytes().unwrap();
    let at = (HEADER_LEN..bytes.len() - 4)
        .find(|&i| bytes[i..i + 4] == SENTINEL.to_le_bytes())
        .unwrap();
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn inspect_and_eval_refuse_a_nan_weight_behind_a_valid_checksum() {
    let dir = tempfile::tempdir().unwrap();
    train_iris(&dir);
    for (value, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let bad = dir.path().join(format!("{shown}.npk"));
        std::fs::write(
            &bad,
            with_first_weight(&dir.path().join("model.npk"), value),
        )
        .unwrap();
        let expected = format!(
            "{}: bad value: float layer 0 weight [0][0] is {shown}\n",
            bad.display()
        );
        for out in [
            npk(&["inspect".as_ref(), bad.as_os_str()]),
            eval(&bad, &iris(), false),
        ] {
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.starts_with("npk: error: "), "{stderr}");
            assert!(stderr.ends_with(&expected), "{stderr}");
        }
    }
}

#[test]
fn train_reports_the_int8_float_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let report = train_iris(&dir);
    let agreement = report["quantized_agreement"].as_f64().unwrap();
    assert!((0.98..=1.0).contains(&agreement), "{report}");

    let out = npk(&[
        "train".as_ref(),
        "--data".as_ref(),
        iris().as_os_str(),
        "--epochs".as_ref(),
        "20".as_ref(),
        "--out".as_ref(),
        dir.path().join("m2.npk").as_os_str(),
    ]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("int8/float agreement:    "), "{stdout}");
    assert!(!text(&out.stderr).contains("warning"));

    let out = npk(&["train", "--data", iris().to_str().unwrap(), "--json"]);
    let stdout = text(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(json["quantized_agreement"].is_null(), "no --out: {json}");
}

#[test]
fn eval_warns_when_the_int8_model_disagrees_with_the_float_model() {
    let dir = tempfile::tempdir().unwrap();
    train_iris(&dir);
    // Negating the float model's logits makes it pick (mostly) another class than the int8
    // model, which is left as trained: a consistent file whose two models disagree.
    let mut file = ModelFile::load(&dir.path().join("model.npk")).unwrap();
    let last = file.mlp.layers.last_mut().unwrap();
    last.weights.iter_mut().for_each(|w| *w = -*w);
    last.bias.iter_mut().for_each(|b| *b = -*b);
    let model = dir.path().join("disagree.npk");
    file.save(&model).unwrap();

    let (json, stderr) = eval_json(&model, &iris());
    let agreement = json["agreement"].as_f64().unwrap();
    assert!(agreement < 0.5, "{json}");
    assert_eq!(
        stderr,
        format!(
            "warning: the int8 model agrees with the float model on only {:.1}% of 150 rows \
             (below 98%): the kernel will classify unlike the trained model; features with \
             extreme ranges or outliers quantize poorly (see the input scales in `npk inspect`)\n",
            agreement * 100.0
        )
    );
}
