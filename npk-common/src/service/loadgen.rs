//! The in-kernel load generator of `npk bench serve --generator kernel`: `npk_loadgen` runs
//! under BPF_PROG_TEST_RUN in XDP live-frames mode and sends prebuilt request frames out of the
//! lab namespace's veth end (XDP_TX); `npk_replies`, attached to that end, counts the replies,
//! checks them against the userspace reference and drops them. Neither costs a system call
//! per request, so the benchmark measures the servers rather than a socket client.
//!
//! # Pacing
//! One BPF_PROG_TEST_RUN call lasts a whole run: the generator sends while [`GenState`] says a
//! request is due and drops its frame otherwise (trains of [`TRAIN`] requests timed on
//! `bpf_ktime_get_ns()`), and userspace interrupts the call once every request is sent.
//! Pacing by calls is not an option: each call sets up a page pool (~25 ms).
//!
//! # Request ids
//! The generator stamps each request id with the case it sent (bits 28..32) and the low 28
//! bits of `bpf_ktime_get_ns()` when its train started: the reply counter knows which reply
//! to expect and the latency (modulo 2^28 ns = 268 ms, far above any latency the lab sees;
//! a train's later requests count the few microseconds their train took to go out).

use bytemuck::{Pod, Zeroable};

use crate::service::wire::{MAX_REPLY_LEN, MAX_REQUEST_LEN, NUM_STATUSES};

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
/// `Array<GenState>`, one entry: written by userspace before a run, then by the generator
/// (one generator thread at a time).
pub const MAP_LOADGEN_STATE: &str = "NPK_LG_STATE";
/// `PerCpuArray`, one entry: the reply counter's copy of the reply it checks.
pub const MAP_LOADGEN_BUF: &str = "NPK_LG_BUF";

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
/// Bytes the test run's input frame has beyond the request (see npk_loadgen).
pub const FRAME_PAD: usize = 64;
/// Requests a paced generator sends back to back, one train every TRAIN periods: servers see
/// bursts, as a NIC's interrupt coalescing gives them, and each side wakes the other's NAPI
/// thread once per train instead of once per request (a wake-up across CPUs costs more than
/// a small model's inference in a VM).
pub const TRAIN: u64 = 32;
/// Trains a generator that fell behind (preempted) may send back to back to catch up.
pub const CATCH_UP: u64 = 2;
/// [`GenState`] times are in 1/2^TIME_SHIFT ns, so that a period keeps its fraction.
pub const TIME_SHIFT: u32 = 8;
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

/// The generator's run: what is left to send and when.
///
/// # Layout
/// 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GenState {
    /// Requests still to send; at 0 the generator drops its frames until interrupted.
    pub remaining: u64,
    /// Time between requests in 1/2^[`TIME_SHIFT`] ns; 0 sends flat out.
    pub period: u64,
    /// When the next request is due, in 1/2^[`TIME_SHIFT`] ns of `bpf_ktime_get_ns()`
    /// (0: at once).
    pub next_due: u64,
    /// `bpf_ktime_get_ns()` when the first request went out (0: none yet); the run's
    /// throughput is timed from it to the last reply.
    pub first_sent_ns: u64,
    /// Requests left in the current train.
    pub credit: u64,
    /// When the current train started (the stamp of its requests).
    pub train_start_ns: u64,
}

impl GenState {
    /// A run of `requests` at `rate` requests/s (`None` or 0: flat out).
    pub fn new(requests: u64, rate: Option<u64>) -> Self {
        let period = match rate {
            Some(r) if r > 0 => (1_000_000_000u64 << TIME_SHIFT) / r,
            _ => 0,
        };
        Self {
            remaining: requests,
            period,
            next_due: 0,
            first_sent_ns: 0,
            credit: 0,
            train_start_ns: 0,
        }
    }

    /// Whether a request may go out now; if so, books it and returns its time stamp: when
    /// its train started. `clock` reads `bpf_ktime_get_ns()`, which costs a VM's paravirtual
    /// clock read: only once per train (per request when flat out). A generator that fell
    /// behind catches up with at most [`CATCH_UP`] trains back to back, so a preempted
    /// generator does not flood the server when it runs again.
    #[inline(always)]
    pub fn take(&mut self, clock: impl FnOnce() -> u64) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        if self.period == 0 {
            self.train_start_ns = clock();
        } else {
            if self.credit == 0 {
                let now_ns = clock();
                let now = now_ns << TIME_SHIFT;
                if now < self.next_due {
                    return None;
                }
                let train = TRAIN * self.period;
                let earliest = now.saturating_sub((CATCH_UP - 1) * train);
                self.next_due = self.next_due.max(earliest) + train;
                self.credit = TRAIN;
                self.train_start_ns = now_ns;
            }
            self.credit -= 1;
        }
        self.remaining -= 1;
        if self.first_sent_ns == 0 {
            self.first_sent_ns = self.train_start_ns;
        }
        Some(self.train_start_ns)
    }
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
    /// `bpf_ktime_get_ns()` of the last reply counted.
    pub last_reply_ns: u64,
}

const _: () = assert!(core::mem::size_of::<LoadgenConfig>() == 16);
const _: () = assert!(core::mem::size_of::<GenState>() == 48);
const _: () = assert!(FRAME_TEMPLATE_LEN.is_power_of_two());
const _: () = assert!(MAX_REPLY_LEN.is_multiple_of(4));
const _: () =
    assert!(core::mem::size_of::<LoadgenCounters>() == 8 * (3 + NUM_STATUSES + HIST_BUCKETS));

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
        self.last_reply_ns = self.last_reply_ns.max(other.last_reply_ns);
    }

    /// The counts of a run: `self` read after it, `before` read before it.
    pub fn since(&self, before: &Self) -> Self {
        let mut run = *self;
        run.sent -= before.sent;
        for (a, b) in run.replies.iter_mut().zip(before.replies) {
            *a -= b;
        }
        run.mismatches -= before.mismatches;
        for (a, b) in run.hist.iter_mut().zip(before.hist) {
            *a -= b;
        }
        run
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
    unsafe impl aya::Pod for super::GenState {}
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
    fn paced_generator_sends_trains_at_its_rate_and_bounds_catch_up() {
        // 1 M/s: a train of 32 every 32 us.
        let mut g = GenState::new(1000, Some(1_000_000));
        let mut sent = std::vec::Vec::new();
        for now in (1_000_000..1_100_000).step_by(50) {
            while let Some(stamp) = g.take(|| now) {
                assert_eq!(stamp, now);
                sent.push(now);
            }
        }
        let train = TRAIN as usize;
        // CATCH_UP trains at once (the bucket starts full), then one per 32 us.
        assert_eq!(sent.len(), (CATCH_UP as usize + 3) * train);
        assert!(
            sent[..CATCH_UP as usize * train]
                .iter()
                .all(|&t| t == 1_000_000)
        );
        for (i, t) in sent[CATCH_UP as usize * train..].chunks(train).enumerate() {
            assert!(
                t.iter().all(|&t| t == 1_032_000 + 32_000 * i as u64),
                "{t:?}"
            );
        }
        // Preempted for 0.1 ms: CATCH_UP trains back to back, not 3.
        let burst = (0..1000).filter(|_| g.take(|| 1_200_000).is_some()).count();
        assert_eq!(burst as u64, CATCH_UP * TRAIN);
        // The budget ends the run.
        let mut g = GenState::new(3, None);
        assert_eq!((0..10).filter(|&t| g.take(|| t).is_some()).count(), 3);
        assert_eq!(g.remaining, 0);
    }

    #[test]
    fn fractional_periods_keep_the_rate() {
        // 300 k/s: 3333.33 ns per request; 100 trains after the first ones take
        // 10.6667 ms, where a whole-ns period would take 10.6656.
        let mut g = GenState::new(u64::MAX, Some(300_000));
        let start = 1u64 << 40;
        let mut n = 0;
        let mut t = start;
        while n < (CATCH_UP + 100) * TRAIN {
            if g.take(|| t).is_some() {
                n += 1;
            } else {
                t += 1;
            }
        }
        let elapsed = t - start;
        assert!(elapsed.abs_diff(10_666_667) <= 5, "{elapsed} ns");
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
