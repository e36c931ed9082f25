//! The in-kernel load generator of `npk bench serve --generator kernel`: `npk_loadgen` runs
//! under BPF_PROG_TEST_RUN in XDP live-frames mode and sends prebuilt request frames out of the
//! lab namespace's veth end (XDP_TX); `npk_replies`, attached to that end, counts the replies,
//! checks them against the userspace reference and drops them. Neither costs a system call
//! per request, so the benchmark measures the servers rather than a socket client.
//!
//! # Request ids
//! The generator stamps each request id with the case it sent (bits 28..32) and the low 28
//! bits of `bpf_ktime_get_ns()`: the reply counter knows which reply to expect and the latency
//! (modulo 2^28 ns = 268 ms, far above any latency the lab sees).

use bytemuck::{Pod, Zeroable};

use crate::wire::{MAX_REPLY_LEN, MAX_REQUEST_LEN, NUM_STATUSES};

/// The generator (XDP, run by BPF_PROG_TEST_RUN only).
pub const PROG_LOADGEN: &str = "npk_loadgen";
/// The reply counter (XDP on the generator's interface).
pub const PROG_REPLIES: &str = "npk_replies";
/// `Array<LoadgenConfig>`, one entry.
pub const MAP_LOADGEN_CONFIG: &str = "NPK_LG_CFG";
/// `Array<FrameTemplate>`, [`MAX_CASES`] entries: the request frame of each case.
pub const MAP_LOADGEN_FRAMES: &str = "NPK_LG_FRAMES";
/// `Array<ExpectedReply>`, [`MAX_CASES`] entries: the reference reply payload of each case.
pub const MAP_LOADGEN_EXPECTED: &str = "NPK_LG_EXPECT";
/// `PerCpuArray<LoadgenCounters>`, one entry.
pub const MAP_LOADGEN_STATS: &str = "NPK_LG_STATS";

/// Distinct requests the generator cycles through (the case lives in 4 bits of the id).
pub const MAX_CASES: usize = 16;
pub const CASE_SHIFT: u32 = 28;
pub const STAMP_MASK: u32 = (1 << CASE_SHIFT) - 1;
/// Ethernet (no VLAN) + IPv4 without options + UDP: where every frame's payload starts.
pub const PAYLOAD_OFFSET: usize = 14 + 20 + 8;
/// Bytes of a frame template: room for the longest request frame, a power of two so that a
/// masked length stays inside it.
pub const FRAME_TEMPLATE_LEN: usize = 1024;
const _: () = assert!(PAYLOAD_OFFSET + MAX_REQUEST_LEN <= FRAME_TEMPLATE_LEN);
/// Latency histogram buckets (see [`latency_bucket`]).
pub const HIST_BUCKETS: usize = 128;

/// # Layout
/// 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct LoadgenConfig {
    /// Request frame length (every case has the same).
    pub frame_len: u32,
    /// Cases in [`MAP_LOADGEN_FRAMES`]: a power of two, 1..=[`MAX_CASES`].
    pub cases: u32,
    /// The server's UDP port (host order): replies come from it.
    pub server_port: u16,
    pub _pad: u16,
    /// Reply payload length (every case has the same).
    pub reply_len: u32,
}

/// One request frame, Ethernet header first; bytes past `frame_len` are unused.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct FrameTemplate {
    pub bytes: [u8; FRAME_TEMPLATE_LEN],
}

/// The reply a case must get as little-endian words (request id and model version, words 2
/// and 4, are not compared).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ExpectedReply {
    pub words: [u32; MAX_REPLY_LEN / 4],
}

/// Per-CPU counters of the generator and the reply counter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct LoadgenCounters {
    /// Frames the generator sent (XDP_TX).
    pub sent: u64,
    /// Replies counted, by status value.
    pub replies: [u64; NUM_STATUSES],
    /// Replies that differ from the expected one (length, status, class, detail or logits).
    pub mismatches: u64,
    /// Latencies in ns, by [`latency_bucket`].
    pub hist: [u64; HIST_BUCKETS],
}

const _: () = assert!(core::mem::size_of::<LoadgenConfig>() == 16);
const _: () = assert!(FRAME_TEMPLATE_LEN.is_power_of_two());
const _: () = assert!(MAX_REPLY_LEN.is_multiple_of(4));
const _: () =
    assert!(core::mem::size_of::<LoadgenCounters>() == 8 * (2 + NUM_STATUSES + HIST_BUCKETS));

impl LoadgenCounters {
    /// Adds `other` into `self` (summing per-CPU values).
    pub fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        for (a, b) in self.replies.iter_mut().zip(other.replies) {
            *a += b;
        }
        self.mismatches += other.mismatches;
        for (a, b) in self.hist.iter_mut().zip(other.hist) {
            *a += b;
        }
    }

    pub fn replies_total(&self) -> u64 {
        self.replies.iter().sum()
    }

    /// The `q` quantile of the latencies in ns: the lower bound of its bucket (values within
    /// 25% of it), or 0 with no replies.
    pub fn latency_quantile_ns(&self, q: u64, per: u64) -> u64 {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return 0;
        }
        // The rank of the quantile, 1-based: ceil(total * q / per).
        let rank = (total * q).div_ceil(per).max(1);
        let mut seen = 0;
        for (b, n) in self.hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_floor(b);
            }
        }
        bucket_floor(HIST_BUCKETS - 1)
    }
}

/// Log-scale bucket of a latency: four buckets per power of two (below 4 ns, one per ns).
#[inline(always)]
pub fn latency_bucket(ns: u32) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let log = 31 - ns.leading_zeros();
    let sub = (ns >> (log - 2)) & 3;
    (4 * log + sub - 4) as usize & (HIST_BUCKETS - 1)
}

/// The smallest latency in bucket `b`.
pub fn bucket_floor(b: usize) -> u64 {
    if b < 4 {
        return b as u64;
    }
    let log = b / 4 + 1;
    ((4 + b % 4) as u64) << (log - 2)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data without padding (size asserts above).
    unsafe impl aya::Pod for super::LoadgenConfig {}
    unsafe impl aya::Pod for super::FrameTemplate {}
    unsafe impl aya::Pod for super::ExpectedReply {}
    unsafe impl aya::Pod for super::LoadgenCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_floors_invert_them() {
        let mut last = 0;
        for ns in (0..100_000u32).chain([STAMP_MASK - 1, STAMP_MASK, u32::MAX >> 1]) {
            let b = latency_bucket(ns);
            assert!(b >= last, "{ns} ns went to bucket {b} after {last}");
            assert!(bucket_floor(b) <= ns as u64);
            assert!(bucket_floor(b + 1) > ns as u64, "{ns} ns above bucket {b}");
            last = b;
        }
        assert_eq!(latency_bucket(STAMP_MASK), 107);
    }

    #[test]
    fn quantiles_read_the_histogram() {
        let mut c = LoadgenCounters::zeroed();
        assert_eq!(c.latency_quantile_ns(50, 100), 0);
        for ns in [1_000u32, 1_000, 1_000, 10_000] {
            c.hist[latency_bucket(ns)] += 1;
        }
        assert_eq!(c.latency_quantile_ns(50, 100), 896);
        assert_eq!(c.latency_quantile_ns(99, 100), 8192);
    }
}
