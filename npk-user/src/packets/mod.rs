//! Packets on the userspace side: building frames (tests, `npk verify`, benchmarks) and turning
//! frames into the same feature vectors as the kernel.
pub mod features;
pub mod pcap;
pub mod synth;
