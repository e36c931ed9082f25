use proptest::prelude::*;

use super::*;
use crate::dataset::Dataset;
use crate::fixtures::training::{Rng, mixed_ranges, random_mlp};
use crate::quantize::quantize;

fn sample(seed: u64) -> ModelFile {
    let mut rng = Rng::new(seed);
    let data = mixed_ranges(&mut rng, 200, 0.02);
    let std = Standardizer::fit(&data);
    let mlp = random_mlp(&mut rng, &[data.num_features, 12, 8, 3]);
    let q = quantize(&mlp, &std, &data, FeatureSchema::Tabular).unwrap();
    ModelFile::new(mlp, std, q, data.feature_names)
}

/// Rewrites the header's checksum so that a mutated payload reaches the parser.
fn reseal(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn save_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npk");
    let file = sample(1);
    file.save(&path).unwrap();
    // Saving again replaces the file and leaves no temporary behind.
    file.save(&path).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let loaded = ModelFile::load(&path).unwrap();
    assert_eq!(loaded, file);
    let row = [0.9f32, 5e5, 60.0, 7.0, 1e-3];
    assert_eq!(loaded.quantized.predict(&row), file.quantized.predict(&row));
}

/// Bytes of `model`'s section in a version 4 file: the kernel-fit flag and the int8 layers.
fn int_model_section_len(model: &IntModel) -> usize {
    let mut w = Writer::default();
    encode_int_model(&mut w, model);
    4 + w.buf.len()
}

/// A format-3 image of `file` (a model the kernel holds): the kernel's `Model` block in place
/// of version 4's flag and int8 layers.
fn version_3_bytes(file: &ModelFile) -> Vec<u8> {
    let v4 = file.to_bytes().unwrap();
    let section_at = v4.len() - int_model_section_len(&file.quantized.model);
    let mut w = Writer::default();
    w.bytes(bytemuck::bytes_of(&*file.kernel_model().unwrap()));
    let mut v3 = [&v4[..section_at], &w.buf[..]].concat();
    v3[4..8].copy_from_slice(&3u32.to_le_bytes());
    let payload_len = (v3.len() - HEADER_LEN) as u64;
    v3[8..16].copy_from_slice(&payload_len.to_le_bytes());
    reseal(&mut v3);
    v3
}

#[test]
fn version_3_files_load_as_the_same_model() {
    let file = sample(2);
    let (loaded, version) = ModelFile::from_bytes_versioned(&version_3_bytes(&file)).unwrap();
    assert_eq!((loaded, version), (file, 3));
}

/// A format-2 image of `file` (trained by npk): version 3 without the origin after the npk
/// version.
fn version_2_bytes(file: &ModelFile) -> Vec<u8> {
    let v3 = version_3_bytes(file);
    let names: usize = file.feature_names.iter().map(|n| 4 + n.len()).sum();
    // Schema, name count and names, creation time, npk version: then the origin's u32.
    let origin_at = HEADER_LEN + 4 + 4 + names + 8 + 4 + file.provenance.npk_version.len();
    assert_eq!(v3[origin_at..origin_at + 4], 0u32.to_le_bytes());
    let mut v2 = [&v3[..origin_at], &v3[origin_at + 4..]].concat();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    let payload_len = (v2.len() - HEADER_LEN) as u64;
    v2[8..16].copy_from_slice(&payload_len.to_le_bytes());
    reseal(&mut v2);
    v2
}

#[test]
fn version_2_files_load_as_trained_by_npk() {
    let file = sample(4);
    let (loaded, version) = ModelFile::from_bytes_versioned(&version_2_bytes(&file)).unwrap();
    assert_eq!((loaded, version), (file, 2));
}

#[test]
fn an_imported_origin_round_trips() {
    let mut file = sample(5);
    file.provenance.origin = Origin::ImportedOnnx {
        file: "iris.onnx".into(),
        producer: "skl2onnx".into(),
        producer_version: "1.20.0".into(),
    };
    let bytes = file.to_bytes().unwrap();
    assert_eq!(
        ModelFile::from_bytes_versioned(&bytes).unwrap(),
        (file.clone(), FILE_FORMAT_VERSION)
    );

    file.provenance.origin = Origin::ImportedOnnx {
        file: String::new(),
        producer: "p".repeat(MAX_NAME_LEN + 1),
        producer_version: String::new(),
    };
    assert_eq!(
        file.to_bytes().unwrap_err().to_string(),
        "bad value: origin: producer of 1025 bytes, at most 1024"
    );
}

#[test]
fn header_errors_name_the_problem() {
    use ModelFileErrorKind as E;
    let good = sample(2).to_bytes().unwrap();
    let len = good.len() as u64;
    let kind = |b: &[u8]| ModelFile::from_bytes(b).unwrap_err();

    assert!(matches!(kind(&[]), E::Empty));
    assert!(matches!(
        kind(b"NP"),
        E::Truncated {
            expected: 20,
            found: 2
        }
    ));
    assert!(matches!(
        kind(&good[..10]),
        E::Truncated {
            expected: 20,
            found: 10
        }
    ));
    assert!(matches!(kind(&good[..100]), E::Truncated { expected, found: 100 } if expected == len));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(kind(&long), E::TrailingData { expected, .. } if expected == len));

    let mut magic = good.clone();
    magic[..4].copy_from_slice(b"\x7fELF");
    assert_eq!(
        kind(&magic).to_string(),
        "not an npk model file: magic \\x7fELF, expected \"NPKF\""
    );

    // 1: files from before the kernel layout stored weights as row pairs.
    for old in [1u32, 7] {
        let mut version = good.clone();
        version[4..8].copy_from_slice(&old.to_le_bytes());
        assert_eq!(
            kind(&version).to_string(),
            format!("unsupported format version: found {old}, supported 2..=4")
        );
    }

    let mut flipped = good.clone();
    flipped[HEADER_LEN + 50] ^= 0x10;
    assert!(
        kind(&flipped)
            .to_string()
            .starts_with("checksum mismatch: stored CRC32 0x")
    );
}

#[test]
fn payload_errors_name_the_problem() {
    use ModelFileErrorKind as E;
    let mut file = sample(3);
    file.standardizer.mean.pop();
    assert_eq!(
        file.to_bytes().unwrap_err().to_string(),
        "inconsistent dims: 4 standardizer means for a float MLP of 5 inputs"
    );

    let mut file = sample(3);
    file.quantized.model.layers[1].shift[2] = 0;
    assert_eq!(
        file.to_bytes().unwrap_err().to_string(),
        "the quantized model is invalid: layer 1 neuron 2: shift 0 outside 1..=62"
    );

    // A consistent payload with a bad value, sealed with a valid checksum.
    let mut bytes = sample(3).to_bytes().unwrap();
    bytes[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&9u32.to_le_bytes());
    reseal(&mut bytes);
    assert!(matches!(
        ModelFile::from_bytes(&bytes).unwrap_err(),
        E::Malformed { offset: 4, ref what } if what == "unknown feature schema 9"
    ));
}

/// `file`'s bytes with the one occurrence of `sentinel`'s bytes replaced by `value`'s and the
/// checksum resealed: a file whose CRC is right but whose value `to_bytes` would refuse.
fn poke(file: &ModelFile, sentinel: &[u8], value: &[u8]) -> Vec<u8> {
    let mut bytes = file.to_bytes().unwrap();
    let at: Vec<usize> = (HEADER_LEN..=bytes.len() - sentinel.len())
        .filter(|&i| bytes[i..i + sentinel.len()] == *sentinel)
        .collect();
    assert_eq!(at.len(), 1, "the sentinel must occur exactly once");
    bytes[at[0]..at[0] + value.len()].copy_from_slice(value);
    reseal(&mut bytes);
    bytes
}

/// Loads `bytes`, expecting a bad-value error; returns its message.
#[track_caller]
fn refused(bytes: &[u8]) -> String {
    let err = ModelFile::from_bytes(bytes).unwrap_err();
    assert!(matches!(err, ModelFileErrorKind::BadValue(_)), "{err:?}");
    err.to_string()
}

/// Where a test case writes its value.
type Field<T> = fn(&mut ModelFile) -> &mut T;

#[test]
fn non_finite_floats_with_a_valid_checksum_are_refused() {
    const S32: f32 = 1234.567;
    let f32_cases: [(Field<f32>, f32, &str); 7] = [
        (
            |f| &mut f.mlp.layers[1].weights[3 * 12 + 7],
            f32::NAN,
            "bad value: float layer 1 weight [3][7] is NaN",
        ),
        (
            |f| &mut f.mlp.layers[0].weights[0],
            f32::NEG_INFINITY,
            "bad value: float layer 0 weight [0][0] is -inf",
        ),
        (
            |f| &mut f.mlp.layers[2].bias[2],
            f32::INFINITY,
            "bad value: float layer 2 bias [2] is inf",
        ),
        (
            |f| &mut f.standardizer.mean[4],
            f32::NAN,
            "bad value: standardizer mean [4] is NaN",
        ),
        (
            |f| &mut f.standardizer.std[1],
            0.0,
            "bad value: standardizer deviation [1] is 0: must be finite and positive",
        ),
        (
            |f| &mut f.standardizer.std[2],
            -1.0,
            "bad value: standardizer deviation [2] is -1: must be finite and positive",
        ),
        (
            |f| &mut f.standardizer.std[0],
            f32::NAN,
            "bad value: standardizer deviation [0] is NaN: must be finite and positive",
        ),
    ];
    for (field, value, message) in f32_cases {
        let mut file = sample(5);
        *field(&mut file) = S32;
        let bytes = poke(&file, &S32.to_le_bytes(), &value.to_le_bytes());
        assert_eq!(refused(&bytes), message);
    }

    const S64: f64 = 1234.56789;
    let f64_cases: [(Field<f64>, f64, &str); 5] = [
        (
            |f| &mut f.quantized.scales.input[3],
            f64::NAN,
            "bad value: input scale [3] is NaN: must be finite and positive",
        ),
        (
            |f| &mut f.quantized.scales.input[0],
            0.0,
            "bad value: input scale [0] is 0: must be finite and positive",
        ),
        (
            |f| &mut f.quantized.scales.input[1],
            -0.5,
            "bad value: input scale [1] is -0.5: must be finite and positive",
        ),
        (
            |f| &mut f.quantized.scales.layers[0].acc[5],
            f64::INFINITY,
            "bad value: layer 0 accumulator scale [5] is inf: must be finite and positive",
        ),
        (
            |f| &mut f.quantized.scales.layers[1].output[7],
            -1.0,
            "bad value: layer 1 output scale [7] is -1: must be finite and positive",
        ),
    ];
    for (field, value, message) in f64_cases {
        let mut file = sample(5);
        *field(&mut file) = S64;
        let bytes = poke(&file, &S64.to_le_bytes(), &value.to_le_bytes());
        assert_eq!(refused(&bytes), message);
    }

    // Values that no sentinel can stand in for (`to_bytes` refuses them), written at their
    // offsets: the output layer's 3 scales, the input clip and the agreement come right before
    // the quantized model's section.
    let file = sample(5);
    let logit = file.quantized.scales.logit();
    let good = file.to_bytes().unwrap();
    let clip_at = good.len() - int_model_section_len(&file.quantized.model) - 2 * 8;
    let second_logit_at = clip_at - 2 * 8;
    assert_eq!(good[second_logit_at..][..8], logit.to_le_bytes());
    for (at, value, message) in [
        (
            second_logit_at,
            2.0,
            format!(
                "bad value: layer 2 output scale [1] is 2, but [0] is {logit}: the output layer \
                 has one logit scale"
            ),
        ),
        (
            clip_at,
            0.0,
            "bad value: input clip quantile 0 is outside (0, 1]".into(),
        ),
        (
            clip_at + 8,
            f64::NAN,
            "bad value: calibration agreement NaN is outside [0, 1]".into(),
        ),
    ] {
        let mut bytes = good.clone();
        bytes[at..at + 8].copy_from_slice(&f64::to_le_bytes(value));
        reseal(&mut bytes);
        assert_eq!(refused(&bytes), message);
    }
}

#[test]
fn save_refuses_a_nan_weight() {
    let mut file = sample(6);
    file.mlp.layers[0].weights[1] = f32::NAN;
    assert_eq!(
        file.to_bytes().unwrap_err().to_string(),
        "bad value: float layer 0 weight [0][1] is NaN"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.npk");
    std::fs::write(&path, b"").unwrap();
    let err = ModelFile::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: the file is empty", path.display())
    );
    let missing = dir.path().join("missing.npk");
    let err = ModelFile::load(&missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{err}"
    );
    let err = sample(4)
        .save(&dir.path().join("no/such/dir/m.npk"))
        .unwrap_err();
    assert!(err.to_string().contains("cannot write"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No byte string makes `from_bytes` panic: random bytes, truncations, bit flips (with the
    /// checksum left stale or resealed so the parser sees them) and random overwrites.
    #[test]
    fn from_bytes_never_panics(
        seed in 0u64..4,
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        reseal_crc in any::<bool>(),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let good = sample(seed).to_bytes().unwrap();
        prop_assert!(ModelFile::from_bytes(&junk).is_err());
        prop_assert!(ModelFile::from_bytes(&good[..cut.index(good.len())]).is_err());
        let mut bad = good.clone();
        for (at, bit) in &flips {
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
        }
        if reseal_crc {
            reseal(&mut bad);
        }
        // A flip may land on bytes whose value nothing checks (a float weight); it must parse
        // or fail, never panic.
        let _ = ModelFile::from_bytes(&bad);
        // Overwrite a window of the payload with junk, then reseal.
        let mut over = good.clone();
        let start = HEADER_LEN + cut.index(good.len() - HEADER_LEN);
        let end = (start + junk.len()).min(over.len());
        over[start..end].copy_from_slice(&junk[..end - start]);
        reseal(&mut over);
        let _ = ModelFile::from_bytes(&over);
    }
}

/// A model of 200 inputs (wider than the kernel's 128) on random rows.
fn wide_sample() -> ModelFile {
    let mut rng = Rng::new(7);
    let (rows, features) = (300, 200);
    let data = Dataset {
        feature_names: (0..features).map(|j| format!("pixel{j}")).collect(),
        features: (0..rows * features)
            .map(|_| rng.next_f64() as f32 * 255.0)
            .collect(),
        labels: (0..rows).map(|r| (r % 3) as u32).collect(),
        num_features: features,
        num_classes: 3,
    };
    let std = Standardizer::fit(&data);
    let mlp = random_mlp(&mut rng, &[features, 300, 3]);
    let q = quantize(&mlp, &std, &data, FeatureSchema::Tabular).unwrap();
    ModelFile::new(mlp, std, q, data.feature_names)
}

#[test]
fn a_wide_model_round_trips_and_says_the_kernel_cannot_hold_it() {
    let file = wide_sample();
    let bytes = file.to_bytes().unwrap();
    assert_eq!(ModelFile::from_bytes(&bytes).unwrap(), file);
    assert_eq!(
        file.kernel_model().unwrap_err().to_string(),
        "the model is 200-300-3, which the kernel cannot hold: hidden layer 1 has width 300: \
         must be 1..=128 (the kernel's MAX_WIDTH) (it trains, quantizes and evaluates in \
         userspace: `npk eval`)"
    );
    // The flag before the int8 layers says 0 (does not fit); a file claiming 1 is refused.
    let flag_at = bytes.len() - int_model_section_len(&file.quantized.model);
    assert_eq!(bytes[flag_at..flag_at + 4], 0u32.to_le_bytes());
    let mut lying = bytes.clone();
    lying[flag_at] = 1;
    reseal(&mut lying);
    assert_eq!(
        ModelFile::from_bytes(&lying).unwrap_err().to_string(),
        "inconsistent dims: the file says the kernel can hold the quantized model, but it is \
         200-300-3"
    );
    // And a kernel model's file says 1.
    let small = sample(1);
    let bytes = small.to_bytes().unwrap();
    let flag_at = bytes.len() - int_model_section_len(&small.quantized.model);
    assert_eq!(bytes[flag_at..flag_at + 4], 1u32.to_le_bytes());
}
