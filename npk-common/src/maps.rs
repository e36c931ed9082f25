//! Names of the programs and maps, defined once for both sides.

/// The XDP classifier program.
pub const PROG_CLASSIFY: &str = "npk_classify";
