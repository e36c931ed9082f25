//! The inference service's side of the contract (`npk serve`, `npk client`, `npk bench
//! serve`): what the classifier does not use.

pub mod loadgen;
pub mod peer;
pub mod udp_reply;
pub mod wire;
