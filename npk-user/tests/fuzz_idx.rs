//! Fuzzing the IDX loader ([`idx::from_bytes`], what `npk train --data` and `npk eval` read for
//! MNIST's files): mutations of a valid image file and label file (their big-endian headers'
//! counts and dims among the edited fields), either file mutated or both, and random bytes. It
//! must return a consistent dataset or an error; never panic, never allocate what the bytes
//! do not hold.

mod fuzz_common;

use std::path::Path;
use std::sync::LazyLock;

use fuzz_common::{DEFAULT_CASES, Input, config, mutations};
use npk::dataset::idx;
use proptest::prelude::*;

/// Four 3 x 5 images and their labels.
static INPUTS: LazyLock<[Input; 2]> = LazyLock::new(|| {
    let (count, rows, columns) = (4u32, 3u32, 5u32);
    let mut images = Vec::new();
    for w in [0x803, count, rows, columns] {
        images.extend_from_slice(&u32::to_be_bytes(w));
    }
    images.extend((0..count * rows * columns).map(|p| (p * 37 % 256) as u8));
    let mut labels = Vec::new();
    for w in [0x801, count] {
        labels.extend_from_slice(&u32::to_be_bytes(w));
    }
    labels.extend([0u8, 9, 3, 15]);
    [
        Input {
            bytes: images,
            length_fields: vec![(4, 4), (8, 4), (12, 4)],
        },
        Input {
            bytes: labels,
            length_fields: vec![(4, 4)],
        },
    ]
});

/// Magics, counts and dims at the loader's limits, and label values around the class limit.
const TOKENS: &[&[u8]] = &[
    &[0, 0, 8, 3],
    &[0, 0, 8, 1],
    &[0, 0, 0, 0],
    &[0xff, 0xff, 0xff, 0xff],
    &[0, 0, 0x10, 0],
    &[0, 0, 0x10, 1],
    &[0, 1, 0, 0],
    &[15],
    &[16],
    &[255],
];

fn check(images: &[u8], labels: &[u8]) -> Result<(), TestCaseError> {
    let loaded = idx::from_bytes(
        Path::new("fuzz-images-idx3-ubyte"),
        images,
        Path::new("fuzz-labels-idx1-ubyte"),
        labels,
    );
    if let Ok(d) = loaded {
        prop_assert!(!d.is_empty());
        prop_assert_eq!(d.features.len(), d.len() * d.num_features);
        prop_assert_eq!(d.feature_names.len(), d.num_features);
        // Every pixel came from the file: at most as many as its bytes.
        prop_assert!(d.features.len() <= images.len());
        prop_assert!(d.labels.iter().all(|&l| (l as usize) < d.num_classes));
        prop_assert!(d.num_classes <= 16);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mutated_idx_files_load_consistently_or_are_refused(
        image_edits in mutations(TOKENS),
        label_edits in mutations(TOKENS),
        which in 0usize..3,
    ) {
        let [images, labels] = &*INPUTS;
        let images = if which != 1 { images.mutate(&image_edits) } else { images.bytes.clone() };
        let labels = if which != 0 { labels.mutate(&label_edits) } else { labels.bytes.clone() };
        check(&images, &labels)?;
    }

    #[test]
    fn random_bytes_are_refused_or_load_consistently(
        images in prop::collection::vec(any::<u8>(), 0..128),
        labels in prop::collection::vec(any::<u8>(), 0..32),
        real_labels in any::<bool>(),
    ) {
        let labels = if real_labels { INPUTS[1].bytes.clone() } else { labels };
        check(&images, &labels)?;
    }
}
