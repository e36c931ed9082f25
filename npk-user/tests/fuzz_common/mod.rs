//! Shared by the `fuzz_*` tests: how many cases to run and the mutations applied to valid
//! inputs (bit flips, byte writes, truncation, splices, inserted tokens, length-field edits).
//!
//! `NPK_FUZZ_CASES` sets the cases per target (default [`DEFAULT_CASES`]); `scripts/fuzz.sh`
//! runs 10^6.

#![allow(dead_code)] // Each fuzz target uses its own part of this module.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// Cases per target in the normal test suite.
pub const DEFAULT_CASES: u32 = 100_000;

/// The proptest config of a fuzz target: `NPK_FUZZ_CASES` cases (or `default`), no failure
/// persistence files (a failure prints its minimal input instead).
pub fn config(default: u32) -> Config {
    let cases = match std::env::var("NPK_FUZZ_CASES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("NPK_FUZZ_CASES={v} is not a number of cases")),
        Err(_) => default,
    };
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One edit of an input.
#[derive(Clone, Debug)]
pub enum Mutation {
    FlipBit {
        at: Index,
        bit: u8,
    },
    SetByte {
        at: Index,
        value: u8,
    },
    /// Cut the input short at `at`.
    Truncate {
        at: Index,
    },
    /// Remove up to `len` bytes at `at`.
    Remove {
        at: Index,
        len: usize,
    },
    /// Insert bytes (random, or a token of the format) at `at`.
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    /// Write bytes (random, or a token) over those at `at`.
    Overwrite {
        at: Index,
        bytes: Vec<u8>,
    },
    /// Overwrite `len` bytes at `to` with the bytes at `from`: a splice of the input into itself.
    Splice {
        from: Index,
        to: Index,
        len: usize,
    },
    /// Duplicate the `len` bytes at `at` (a repeated record or field).
    Repeat {
        at: Index,
        len: usize,
    },
    /// Overwrite one of the input's length-like fields (see [`Input::length_fields`]) with a
    /// boundary value, in either byte order.
    Length {
        field: Index,
        value: LengthValue,
        big_endian: bool,
    },
}

/// What a length field is set to.
#[derive(Clone, Copy, Debug)]
pub enum LengthValue {
    /// A boundary: 0, 1, 2^k - 1, 2^k, 2^k + 1 for k in 1..=32, u32::MAX, u64::MAX.
    Boundary(u64),
    /// The field's value plus this (wrapping): off by a few bytes or a record.
    Delta(i64),
    Any(u64),
}

fn length_value() -> impl Strategy<Value = LengthValue> {
    let boundary = (0u32..=64, -1i64..=1).prop_map(|(k, d)| {
        LengthValue::Boundary(match k {
            0 => 0,
            64 => u64::MAX,
            k => (1u64 << k).wrapping_add_signed(d),
        })
    });
    prop_oneof![
        3 => boundary,
        3 => prop_oneof![-16i64..=16, Just(-4096), Just(4096)].prop_map(LengthValue::Delta),
        1 => any::<u64>().prop_map(LengthValue::Any),
    ]
}

/// A mutation whose inserted tokens come from `tokens` half the time.
pub fn mutation(tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..16),
        prop::sample::select(tokens).prop_map(<[u8]>::to_vec),
    ];
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        2 => (any::<Index>(), token.clone()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<Index>(), token).prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        1 => (any::<Index>(), any::<Index>(), 1usize..256)
            .prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
        1 => (any::<Index>(), 1usize..128).prop_map(|(at, len)| Mutation::Repeat { at, len }),
        4 => (any::<Index>(), length_value(), prop::bool::weighted(0.2)).prop_map(
            |(field, value, big_endian)| Mutation::Length { field, value, big_endian }
        ),
    ]
}

/// 1 to 4 mutations.
pub fn mutations(tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(tokens), 1..5)
}

/// A valid input and where its length-like fields are.
pub struct Input {
    pub bytes: Vec<u8>,
    /// `(offset, width)` of each field to edit with [`Mutation::Length`].
    pub length_fields: Vec<(usize, usize)>,
}

impl Input {
    /// `bytes` with every 4-byte window (any alignment) whose little-endian value lies in
    /// 1..=`max` taken for a length field: in binary formats those are counts, lengths and
    /// dims (floats and timestamps are far larger, zero padding is 0). `extra` adds known
    /// fields, such as a u64 length.
    pub fn binary(bytes: Vec<u8>, max: u32, extra: &[(usize, usize)]) -> Self {
        let mut length_fields: Vec<(usize, usize)> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| (1..=max).contains(&u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .map(|(i, _)| (i, 4))
            .collect();
        length_fields.extend_from_slice(extra);
        Self {
            bytes,
            length_fields,
        }
    }

    /// A copy with `mutations` applied in order.
    pub fn mutate(&self, mutations: &[Mutation]) -> Vec<u8> {
        let mut b = self.bytes.clone();
        for m in mutations {
            apply(&mut b, m, &self.length_fields);
        }
        b
    }
}

/// `at` as a position in `0..=len` (an insertion point or cut).
fn point(at: &Index, len: usize) -> usize {
    at.index(len + 1)
}

fn apply(b: &mut Vec<u8>, m: &Mutation, length_fields: &[(usize, usize)]) {
    let len = b.len();
    match m {
        Mutation::FlipBit { at, bit } if len > 0 => b[at.index(len)] ^= 1 << bit,
        Mutation::SetByte { at, value } if len > 0 => b[at.index(len)] = *value,
        Mutation::Truncate { at } => b.truncate(point(at, len)),
        Mutation::Remove { at, len: n } => {
            let start = point(at, len);
            b.drain(start..(start + n).min(len));
        }
        Mutation::Insert { at, bytes } => {
            let at = point(at, len);
            b.splice(at..at, bytes.iter().copied());
        }
        Mutation::Overwrite { at, bytes } => {
            let at = point(at, len);
            let n = bytes.len().min(len - at);
            b[at..at + n].copy_from_slice(&bytes[..n]);
        }
        Mutation::Splice { from, to, len: n } if len > 0 => {
            let (from, to) = (from.index(len), to.index(len));
            let n = (*n).min(len - from).min(len - to);
            b.copy_within(from..from + n, to);
        }
        Mutation::Repeat { at, len: n } => {
            let start = point(at, len);
            let end = (start + n).min(len);
            let copy = b[start..end].to_vec();
            b.splice(end..end, copy);
        }
        Mutation::Length {
            field,
            value,
            big_endian,
        } if !length_fields.is_empty() => {
            let (at, width) = length_fields[field.index(length_fields.len())];
            // Earlier mutations may have moved or cut the field.
            let Some(slot) = b.get_mut(at..at + width) else {
                return;
            };
            let mut old = [0u8; 8];
            old[..width].copy_from_slice(slot);
            let old = u64::from_le_bytes(old);
            let new = match *value {
                LengthValue::Boundary(v) | LengthValue::Any(v) => v,
                LengthValue::Delta(d) => old.wrapping_add_signed(d),
            };
            let bytes = if *big_endian {
                new.to_be_bytes()[8 - width..].to_vec()
            } else {
                new.to_le_bytes()[..width].to_vec()
            };
            slot.copy_from_slice(&bytes);
        }
        // A byte-level edit of an empty input, or a length edit without length fields.
        _ => {}
    }
}
