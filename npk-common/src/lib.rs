//! The contract between npk's kernel programs and its userspace tools.
//!
//! Everything here is `no_std` and float-free on the paths the kernel uses: the model layout
//! stored in BPF maps ([`model`]), fixed-point requantization ([`fixed`]), the one integer
//! inference function ([`infer`]), packet parsing and the feature vector ([`packet`]), host and service state ([`host`]) and the
//! names and value types of every map ([`maps`]), the UDP inference protocol ([`wire`]) and the
//! inference server's request parsing and reply rewriting ([`udp_reply`]).
#![no_std]
#![deny(clippy::float_arithmetic)]

#[cfg(test)]
extern crate std;

pub mod fixed;
pub mod host;
pub mod infer;
pub mod loadgen;
pub mod maps;
pub mod model;
pub mod packet;
pub mod peer;
pub mod udp_reply;
pub mod wire;
