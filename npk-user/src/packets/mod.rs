//! Packets on the userspace side: building frames (tests, `npk verify`, benchmarks), reading
//! captures and turning frames into the same feature vectors as the kernel, and generating
//! labelled traffic in a throwaway network namespace.
pub mod augment;
pub mod capture;
pub mod features;
pub mod lab;
pub mod pcap;
pub mod raw_ipv4;
pub mod synth;
pub mod traffic;
