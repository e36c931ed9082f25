#![no_std]
// The programs are in the `npk` binary target; this library exists so that npk-user can list
// the crate as a build-dependency and be rebuilt when it changes.
