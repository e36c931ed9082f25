//! What the CLI tests that run the `npk` binary share.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// A file of the repository's data/ folder.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

/// Runs the `npk` binary this test was built with, to completion.
pub fn npk(args: &[impl AsRef<OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_npk"))
        .args(args)
        .output()
        .expect("run npk")
}
