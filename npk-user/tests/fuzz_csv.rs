//! Fuzzing the CSV loader ([`Dataset::from_reader`], what `npk train` and `npk eval` read):
//! mutations of valid files (the iris head, packet features as `npk features` writes them,
//! quoted fields with CRLF line ends) with CSV and number tokens, and random bytes. It must
//! return a consistent dataset or an error; never panic.

mod fuzz_common;

use std::path::Path;
use std::sync::LazyLock;

use fuzz_common::{DEFAULT_CASES, Input, config, mutations};
use npk::dataset::Dataset;
use npk_common::packet::FEATURE_NAMES;
use proptest::prelude::*;

static INPUTS: LazyLock<Vec<Input>> = LazyLock::new(|| {
    let iris =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/iris.csv"))
            .unwrap();
    // The header and the first rows of every class.
    let lines: Vec<&str> = iris.lines().collect();
    let iris_head = [&lines[..9], &lines[51..59], &lines[101..109]]
        .concat()
        .join("\n")
        + "\n";
    let mut packets = FEATURE_NAMES.join(",") + ",label\n";
    for r in 0..12u32 {
        let row: Vec<String> = (0..FEATURE_NAMES.len() as u32)
            .map(|j| (r * 37 + j * 1009).to_string())
            .collect();
        packets += &format!("{},{}\n", row.join(","), r % 5);
    }
    let quoted = "\"a\",\"b, c\",label\r\n\"1.5\",\" 2e3 \",0\r\n-7,\"0\",1\r\n\r\n3,4,2\r\n";
    [iris_head, packets, quoted.to_owned()]
        .into_iter()
        .map(|text| Input {
            bytes: text.into_bytes(),
            length_fields: Vec::new(),
        })
        .collect()
});

/// Separators, quotes, line ends and values at the loader's limits.
const TOKENS: &[&[u8]] = &[
    b",",
    b",,",
    b"\n",
    b"\r\n",
    b"\r",
    b"\"",
    b";",
    b"\t",
    b" ",
    b"NaN",
    b"inf",
    b"-inf",
    b"-1",
    b"-0",
    b"1e39",
    b"1e30",
    b"3.4028235e38",
    b"0.5",
    b"15",
    b"16",
    b"4294967296",
    b"\0",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"\"a,b\"",
    b"label",
    b"99999999999999999999999999999999999999999999999999999999999999999999999",
];

/// Loads `bytes` for training, or for scoring a 3-class model; an accepted dataset must hold
/// what its shape says. (One load per case: building the CSV reader's state machine is most
/// of a load's time on inputs this small.)
fn check(bytes: &[u8], for_model: bool) -> Result<(), TestCaseError> {
    let path = Path::new("fuzz.csv");
    let loaded = if for_model {
        Dataset::from_reader_for_model(bytes, path, 3)
    } else {
        Dataset::from_reader(bytes, path)
    };
    if let Ok(d) = loaded {
        prop_assert!(!d.is_empty());
        prop_assert_eq!(d.features.len(), d.len() * d.num_features);
        prop_assert_eq!(d.feature_names.len(), d.num_features);
        prop_assert!(d.features.iter().all(|x| x.is_finite()));
        prop_assert!(d.labels.iter().all(|&l| (l as usize) < d.num_classes));
        prop_assert!(!for_model || d.num_classes <= 3);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mutated_csv_files_load_consistently_or_are_refused(
        which in 0usize..3,
        edits in mutations(TOKENS),
        for_model in any::<bool>(),
    ) {
        check(&INPUTS[which].mutate(&edits), for_model)?;
    }

    #[test]
    fn random_bytes_are_refused_or_load_consistently(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        for_model in any::<bool>(),
    ) {
        check(&bytes, for_model)?;
    }
}
