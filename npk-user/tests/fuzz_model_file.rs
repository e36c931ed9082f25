//! Fuzzing the model file decoder ([`ModelFile::from_bytes`], what `npk inspect`, `eval`,
//! `attach` and `push` read): mutations of real model files, resealed with a valid checksum
//! most of the time so that the payload parser and the value checks see them, and random
//! bytes. It must return an error or a file that re-encodes to the same bytes; never panic.

mod fuzz_common;

use std::path::Path;
use std::sync::LazyLock;

use fuzz_common::{DEFAULT_CASES, Input, Mutation, config, mutations};
use npk::dataset::{Dataset, Standardizer};
use npk::model_file::{FILE_FORMAT_VERSION, FILE_MAGIC, HEADER_LEN, ModelFile};
use npk::quantize::quantize;
use npk::train::{OptimizerKind, TrainConfig, train};
use npk_common::model::FeatureSchema;
use proptest::prelude::*;

/// A model trained on one of the repository's CSV files, as `npk train --out` writes it.
fn trained(csv: &str, hidden: &[usize]) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(csv);
    let data = Dataset::load_csv(&path).unwrap();
    let std = Standardizer::fit(&data);
    let config = TrainConfig {
        hidden: hidden.to_vec(),
        epochs: 3,
        batch: 32,
        optimizer: OptimizerKind::Adam,
        lr: 0.01,
        seed: 1,
    };
    let mlp = train(&std.apply(&data), &config, |_| {}).unwrap();
    let q = quantize(&mlp, &std, &data, FeatureSchema::Tabular).unwrap();
    ModelFile::new(mlp, std, q, data.feature_names)
        .to_bytes()
        .unwrap()
}

/// A model file split in two halves: the first (header, names, float layers) is mutated alone
/// half the time, so that edits land in the counts, floats and scales as often as in the int8
/// layers at the end.
struct Sample {
    whole: Input,
    head: Input,
    block: Vec<u8>,
}

impl Sample {
    fn new(bytes: Vec<u8>) -> Self {
        let split = bytes.len() / 2;
        // The header's u64 payload length is a length field too.
        let header_len = [(8, 8)];
        Self {
            head: Input::binary(bytes[..split].to_vec(), 1 << 20, &header_len),
            block: bytes[split..].to_vec(),
            whole: Input::binary(bytes, 1 << 20, &header_len),
        }
    }

    fn mutate(&self, edits: &[Mutation], head_only: bool) -> Vec<u8> {
        if head_only {
            let mut b = self.head.mutate(edits);
            b.extend_from_slice(&self.block);
            b
        } else {
            self.whole.mutate(edits)
        }
    }
}

/// Iris with two hidden layers, digits (64 inputs, 10 classes) with three.
static INPUTS: LazyLock<[Sample; 2]> = LazyLock::new(|| {
    [
        Sample::new(trained("iris.csv", &[16, 16])),
        Sample::new(trained("digits.csv", &[16, 8, 8])),
    ]
});

/// Tokens inserted by mutations: the magic, format versions, floats the checks refuse.
const TOKENS: &[&[u8]] = &[
    b"NPKF",
    b"NPKM",
    &1u32.to_le_bytes(),
    &2u32.to_le_bytes(),
    &3u32.to_le_bytes(),
    &4u32.to_le_bytes(),
    &f32::NAN.to_le_bytes(),
    &f32::INFINITY.to_le_bytes(),
    &f64::NAN.to_le_bytes(),
    &(-1.0f64).to_le_bytes(),
    &[0xff; 8],
    &[0; 16],
];

fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Whatever `from_bytes` accepts holds only values the format allows (docs/model-format.md)
/// and is exactly what `to_bytes` writes back (a version-2 file: what it reads back as).
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok((file, version)) = ModelFile::from_bytes_versioned(bytes) else {
        return Ok(());
    };
    for d in &file.mlp.layers {
        prop_assert!(d.weights.iter().chain(&d.bias).all(|v| v.is_finite()));
    }
    let s = &file.standardizer;
    prop_assert!(s.mean.iter().all(|m| m.is_finite()));
    prop_assert!(s.std.iter().all(|&d| d.is_finite() && d > 0.0));
    let scales = &file.quantized.scales;
    let layer_scales = scales
        .layers
        .iter()
        .flat_map(|l| l.acc.iter().chain(&l.output));
    prop_assert!(
        scales
            .input
            .iter()
            .chain(layer_scales)
            .all(|&v| v.is_finite() && v > 0.0)
    );
    let again = file.to_bytes();
    prop_assert!(again.is_ok(), "accepted but not writable: {again:?}");
    let again = again.unwrap();
    if version == FILE_FORMAT_VERSION {
        prop_assert!(again == bytes, "accepted bytes do not re-encode");
    } else {
        let reread = ModelFile::from_bytes(&again);
        prop_assert!(
            reread.as_ref().ok() == Some(&file),
            "a version-{version} file re-encodes as another model: {reread:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mutated_model_files_are_refused_or_round_trip(
        which in 0usize..2,
        edits in mutations(TOKENS),
        head_only in any::<bool>(),
        reseal_crc in prop::bool::weighted(0.9),
    ) {
        let mut bytes = INPUTS[which].mutate(&edits, head_only);
        if reseal_crc {
            reseal(&mut bytes);
        }
        check(&bytes)?;
    }

    /// Random bytes, bare or behind a header that is right about their length and checksum.
    #[test]
    fn random_payloads_are_refused(
        payload in prop::collection::vec(any::<u8>(), 0..512),
        with_header in any::<bool>(),
    ) {
        let bytes = if with_header {
            let mut b = FILE_MAGIC.to_vec();
            b.extend_from_slice(&FILE_FORMAT_VERSION.to_le_bytes());
            b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            b.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            b.extend_from_slice(&payload);
            b
        } else {
            payload
        };
        prop_assert!(ModelFile::from_bytes(&bytes).is_err());
    }
}
