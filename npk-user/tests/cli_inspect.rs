//! `npk inspect` on a model file written through the library, and on broken files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use npk::dataset::{Dataset, Standardizer};
use npk::model_file::ModelFile;
use npk::quantize::quantize;
use npk::train::{Dense, Mlp};
use npk_common::model::{FeatureSchema, Model};

/// A 3-input, 6-hidden, 2-class model on a deterministic dataset.
fn model_file() -> ModelFile {
    let names = ["bytes", "ratio", "flag"];
    let rows = 64;
    let features: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let r = r as f32;
            [r * 1000.0, (r * 0.37) % 1.0, (r as u32 % 2) as f32]
        })
        .collect();
    let data = Dataset {
        feature_names: names.map(String::from).to_vec(),
        labels: (0..rows).map(|r| u32::from(r > 31)).collect(),
        features,
        num_features: 3,
        num_classes: 2,
    };
    let mean: Vec<f32> = (0..3)
        .map(|j| (0..rows).map(|r| data.row(r)[j]).sum::<f32>() / rows as f32)
        .collect();
    let std = (0..3)
        .map(|j| {
            let var = (0..rows)
                .map(|r| (data.row(r)[j] - mean[j]).powi(2))
                .sum::<f32>()
                / rows as f32;
            var.sqrt()
        })
        .collect();
    let standardizer = Standardizer { mean, std };
    let weight = |k: usize| ((k * 7919 % 23) as f32 - 11.0) / 11.0;
    let mlp = Mlp {
        layers: vec![
            Dense {
                in_dim: 3,
                out_dim: 6,
                weights: (0..18).map(weight).collect(),
                bias: vec![0.1; 6],
            },
            Dense {
                in_dim: 6,
                out_dim: 2,
                weights: (18..30).map(weight).collect(),
                bias: vec![0.0, 0.2],
            },
        ],
    };
    let q = quantize(&mlp, &standardizer, &data, FeatureSchema::Tabular).unwrap();
    ModelFile::new(mlp, standardizer, q, data.feature_names)
}

#[track_caller]
fn inspect(path: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_npk"));
    cmd.arg("inspect").arg(path);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run npk")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn inspect_prints_layers_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npk");
    model_file().save(&path).unwrap();
    let out = inspect(&path, false);
    let text = String::from_utf8(out.stdout).unwrap();
    eprintln!("{text}");
    let j = inspect(&path, true);
    eprintln!("{}", String::from_utf8_lossy(&j.stdout));
    eprintln!(
        "{}",
        String::from_utf8_lossy(&inspect(&dir.path().join("x"), false).stderr)
    );
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "feature schema tabular, 3 inputs, 2 classes, model version 1",
        " bytes ",
        " ratio ",
        " flag ",
        "  6x3  relu ",
        "  2x6  none ",
        &format!(
            "38 parameters, 30 MACs per inference, {} bytes in the kernel",
            size_of::<Model>()
        ),
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn inspect_json_is_one_object_on_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npk");
    let file = model_file();
    file.save(&path).unwrap();
    let out = inspect(&path, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["feature_schema"], "tabular");
    assert_eq!(v["num_inputs"], 3);
    assert_eq!(v["macs"], file.quantized.model.macs());
    assert_eq!(v["kernel_bytes"], size_of::<Model>());
    assert_eq!(v["inputs"][1]["name"], "ratio");
    assert_eq!(
        v["inputs"][0]["frac_bits"],
        file.quantized.encoding.frac_bits[0]
    );
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["activation"], "relu");
    assert_eq!(layers[1]["output_zero_point"], 0);
    let shift = &layers[1]["shift"];
    assert!(
        shift["min"].as_i64().unwrap() >= 1 && shift["max"].as_i64().unwrap() <= 62,
        "{shift}"
    );
}

#[test]
fn inspect_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = model_file();
    let bytes = good.to_bytes().unwrap();
    let mut corrupt = bytes.clone();
    corrupt[bytes.len() / 2] ^= 0x40;
    let mut version = bytes.clone();
    version[4..8].copy_from_slice(&1u32.to_le_bytes());
    let cases = [
        (
            write(dir.path(), "empty.npk", b""),
            "the file is empty".to_string(),
        ),
        (
            write(dir.path(), "short.npk", &bytes[..bytes.len() / 2]),
            format!(
                "truncated: expected {} bytes, found {}",
                bytes.len(),
                bytes.len() / 2
            ),
        ),
        (
            write(dir.path(), "corrupt.npk", &corrupt),
            "checksum mismatch".to_string(),
        ),
        (
            write(dir.path(), "version.npk", &version),
            "unsupported format version: found 1, supported 2..=4".to_string(),
        ),
        (
            write(dir.path(), "text.npk", b"hello"),
            "not an npk model file".to_string(),
        ),
        (dir.path().join("missing.npk"), "cannot read".to_string()),
    ];
    for (path, message) in cases {
        for json in [false, true] {
            let out = inspect(&path, json);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{} succeeded", path.display());
            assert!(
                out.stdout.is_empty(),
                "{}: printed {:?}",
                path.display(),
                out.stdout
            );
            assert!(
                stderr.contains(&format!("{}: {message}", path.display())),
                "{}: {stderr}",
                path.display()
            );
        }
    }
}
