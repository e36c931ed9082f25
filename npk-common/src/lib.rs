//! The contract between npk's kernel programs and its userspace tools.
//!
//! Everything here is `no_std` and float-free on the paths the kernel uses. The classifier's
//! contract: the model layout stored in BPF maps ([`model`]), fixed-point requantization
//! ([`fixed`]), the one integer inference function ([`infer`]), packet parsing and the feature
//! vector ([`packet`]), host and service state ([`host`]), the names and value types of every
//! map ([`maps`]). Apart from it, the inference service's ([`service`]): the UDP inference
//! protocol, whom a server answers, the in-kernel server's request parsing and reply
//! rewriting, and the in-kernel load generator.
#![no_std]
#![deny(clippy::float_arithmetic)]

#[cfg(test)]
extern crate std;

pub mod fixed;
pub mod host;
pub mod infer;
pub mod maps;
pub mod model;
pub mod packet;
pub mod service;
