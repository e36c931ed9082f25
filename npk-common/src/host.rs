//! What a packet's sending host and its targeted service have done recently: the state and
//! integer math behind the host and service features of [`crate::packet`] (schema v2).
//!
//! Per-5-tuple features cannot see a flood that changes its source port on every packet, or a
//! scan that sends one packet per flow: every such packet is the first of its flow. A host's
//! (source address's) rates of packets, new flows and SYNs, and how many ports and hosts it
//! touched, can; a service's (destination address, protocol, port) rate of new flows and the
//! number of sources it hears from catch floods whose source addresses are spoofed.
//!
//! # Rates: exponentially decayed counters
//! A counter holds events in fixed point ([`RATE_ONE`] per event). Before each update it decays
//! by `2^(-elapsed / half-life)`, half-life `2^`[`HALF_LIFE_SHIFT`] ns (268 ms): whole
//! half-lives are shifts, the rest `x` of one the quadratic `1 - ln2 x + (ln2 - 1/2) x^2` in
//! 16-bit fixed point (exact at both ends and in slope at 0, so many small steps decay at the
//! true rate; at most 1.0% below `2^-x`). At a steady `r` events/s the counter settles at about
//! `r * tau` events, `tau = half-life / ln 2 = 0.387 s`. Counters saturate at [`RATE_MAX`],
//! which keeps every product below 2^63.
//!
//! # Distinct ports and hosts: windowed bitmaps
//! A 64-bit bitmap gets one bit per value (a multiplicative hash picks it) for the current window
//! of `2^`[`WINDOW_SHIFT`] ns (1.07 s); at a window change the bitmap moves to `prev` (or is
//! cleared when a whole window went by). The feature is `popcount(cur | prev)`: distinct values
//! over the last one to two windows, 0..=64 (n distinct values set about `64 (1 - e^(-n/64))`).
//!
//! # Pacing: the rhythm of a host's packets
//! Flood and scan tools send on a timer, one packet per period; applications send in bursts
//! (a window of TCP segments, an iperf3 pacing tick of several datagrams, a page's requests) and
//! pause. The host keeps moving averages (weight 2^-[`GAP_EWMA_SHIFT`]) of `log2_q3` of the gap
//! between its packets in ns and of the absolute deviation from it, both in 1/16 steps: the
//! mean says how fast (as the rates do, but without the rate's time constant), the deviation how
//! regular. It does not depend on the rate: a metronome at 100 or at 10,000 packets/s deviates
//! little, a burst-and-pause sender a lot (measured on the lab: hping3 floods and iperf3 UDP at
//! the same ~3,000 packets/s, see scripts/heldout.sh).
//!
//! # Feature scale
//! Rates are heavy-tailed (a host sends 1 or 100,000 packets/s), so they enter the model as
//! [`log2_q3`] of the counter: 8 steps per doubling, 0..=512, which int8 inputs resolve
//! without saturating. One event in an idle counter reads 65; 1,000 packets/s about 133.

use bytemuck::{Pod, Zeroable};

/// Fixed-point one of the rate counters.
pub const RATE_FRAC_BITS: u32 = 8;
pub const RATE_ONE: u64 = 1 << RATE_FRAC_BITS;
/// Counters saturate here (2^46): `value * fraction` (16 bits) stays below 2^63.
pub const RATE_MAX: u64 = 1 << 46;
/// Half-life of the rate counters: 2^28 ns = 268 ms.
pub const HALF_LIFE_SHIFT: u32 = 28;
/// Bits of a half-life's fraction and of the decay factor.
const FRACTION_BITS: u32 = 16;
/// `ln 2` and `ln 2 - 1/2` in Q16: the quadratic's coefficients.
const LN2_Q16: u64 = 45426;
const CURVE_Q16: u64 = 12658;
/// Distinct-value bitmaps cover windows of 2^30 ns = 1.07 s.
pub const WINDOW_SHIFT: u32 = 30;
/// The pacing averages move by 1/8 of the difference per packet.
pub const GAP_EWMA_SHIFT: u32 = 3;
/// Fixed-point one of the pacing averages (1/16 of a [`log2_q3`] step).
pub const GAP_ONE: i32 = 16;
/// Host features [`HostState::observe`] writes.
pub const HOST_FEATURES: usize = 9;

/// `value` decayed over `elapsed_ns`: halved per whole half-life, then the quadratic for the
/// rest.
#[inline(always)]
pub fn decay(value: u64, elapsed_ns: u64) -> u64 {
    let halvings = elapsed_ns >> HALF_LIFE_SHIFT;
    // RATE_MAX < 2^47: 47 halvings leave nothing.
    if halvings >= 47 {
        return 0;
    }
    let v = value.min(RATE_MAX) >> halvings;
    let x = (elapsed_ns >> (HALF_LIFE_SHIFT - FRACTION_BITS)) & ((1 << FRACTION_BITS) - 1);
    // Q16 factor in 2^15..=2^16: v < 2^47 times it stays below 2^63.
    let factor = (1 << FRACTION_BITS) - ((LN2_Q16 * x) >> FRACTION_BITS)
        + ((CURVE_Q16 * ((x * x) >> FRACTION_BITS)) >> FRACTION_BITS);
    (v * factor) >> FRACTION_BITS
}

/// `value` decayed to now plus `add` (already in fixed point), saturating at [`RATE_MAX`].
#[inline(always)]
fn bump(value: &mut u64, elapsed_ns: u64, add: u64) {
    let v = decay(*value, elapsed_ns) + add.min(RATE_MAX);
    *value = if v > RATE_MAX { RATE_MAX } else { v };
}

/// About `8 * log2(v)`, piecewise linear: 0 for 0, else `8 * msb + (the 3 bits below the
/// msb) + 1`. Monotonic, 0..=512.
#[inline(always)]
pub fn log2_q3(v: u64) -> i32 {
    if v == 0 {
        return 0;
    }
    let msb = 63 - v.leading_zeros();
    let mantissa = if msb >= 3 {
        (v >> (msb - 3)) & 7
    } else {
        (v << (3 - msb)) & 7
    };
    (8 * msb + mantissa as u32 + 1) as i32
}

/// The bit a value sets in a 64-bit bitmap (Fibonacci hashing: the top 6 bits of a product).
#[inline(always)]
pub fn sketch_bit(value: u32) -> u64 {
    1u64 << (value.wrapping_mul(0x9e37_79b1) >> 26)
}

/// A 16-byte address folded to 32 bits for [`sketch_bit`].
#[inline(always)]
pub fn fold_addr(a: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    w(0) ^ w(4) ^ w(8) ^ w(12).rotate_left(16)
}

/// Moves a pair of bitmaps to the window of `now_ns`; `window` is the window they were filled in.
#[inline(always)]
fn roll(window: &mut u64, now_ns: u64, bitmaps: &mut [[u64; 2]]) {
    let current = now_ns >> WINDOW_SHIFT;
    if current == *window {
        return;
    }
    let next = current == window.wrapping_add(1);
    for b in bitmaps {
        b[1] = if next { b[0] } else { 0 };
        b[0] = 0;
    }
    *window = current;
}

/// Distinct values seen in the current and previous window.
#[inline(always)]
pub fn distinct(bitmap: &[u64; 2]) -> i32 {
    (bitmap[0] | bitmap[1]).count_ones() as i32
}

/// What one packet contributes to its host's and its service's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketEvent {
    pub ip_len: u32,
    /// The packet opened a flow (its flow's first packet).
    pub new_flow: bool,
    /// TCP with SYN set and ACK clear: a connection attempt.
    pub syn: bool,
    pub icmp: bool,
    pub dst_port: u16,
    /// [`fold_addr`] of the destination / source address.
    pub dst_host: u32,
    pub src_host: u32,
}

/// Per-sending-host state, keyed by the source address (IPv4-mapped for IPv4, as in
/// [`crate::packet::FlowKey`]).
///
/// # Layout
/// 112 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct HostState {
    /// When the counters were last decayed; 0 before the first packet.
    pub last_ns: u64,
    /// The window of `ports[0]`/`hosts[0]` (see [`WINDOW_SHIFT`]).
    pub window: u64,
    /// Decayed counters in [`RATE_ONE`] units: packets, IP bytes, SYNs without ACK, new flows,
    /// ICMP packets.
    pub packets: u64,
    pub bytes: u64,
    pub syns: u64,
    pub new_flows: u64,
    pub icmp: u64,
    /// Destination ports and destination hosts touched: `[current, previous]` window.
    pub ports: [u64; 2],
    pub hosts: [u64; 2],
    /// Moving averages of `log2_q3(gap ns)` and of its absolute deviation, in [`GAP_ONE`]
    /// units; updated from the host's second packet on.
    pub gap_mean: i32,
    pub gap_dev: i32,
    /// Decayed count of the packets this machine sent the host ([`RATE_ONE`] units), as of
    /// `replies_ns`: the replies, counted by the egress program ([`HostState::replied`]).
    pub replies: u64,
    pub replies_ns: u64,
}

/// [`crate::packet::reply_balance`] of a flow or host that got no reply: below every ratio
/// the counters can express (a reply's `log2_q3` is at least 1, a count's at most 8 * 47).
pub const NO_REPLIES: i32 = -384;

impl HostState {
    /// Counts one packet this machine sent the host (a reply, or a request of its own) at
    /// `now_ns`.
    #[inline(always)]
    pub fn replied(&mut self, now_ns: u64) {
        bump(
            &mut self.replies,
            now_ns.saturating_sub(self.replies_ns),
            RATE_ONE,
        );
        self.replies_ns = now_ns;
    }

    /// Counts `e` at `now_ns` and writes the host features: log rates of packets, bytes, SYNs,
    /// new flows and ICMP, distinct destination ports and hosts, then the pacing mean and
    /// deviation.
    #[inline(always)]
    pub fn observe(&mut self, e: &PacketEvent, now_ns: u64, out: &mut [i32; HOST_FEATURES]) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        if self.last_ns != 0 {
            self.pace(elapsed);
        }
        self.last_ns = now_ns;
        bump(&mut self.packets, elapsed, RATE_ONE);
        bump(
            &mut self.bytes,
            elapsed,
            (e.ip_len as u64) << RATE_FRAC_BITS,
        );
        bump(&mut self.syns, elapsed, e.syn as u64 * RATE_ONE);
        bump(&mut self.new_flows, elapsed, e.new_flow as u64 * RATE_ONE);
        bump(&mut self.icmp, elapsed, e.icmp as u64 * RATE_ONE);
        let mut bitmaps = [self.ports, self.hosts];
        roll(&mut self.window, now_ns, &mut bitmaps);
        [self.ports, self.hosts] = bitmaps;
        self.ports[0] |= sketch_bit(e.dst_port as u32);
        self.hosts[0] |= sketch_bit(e.dst_host);
        *out = [
            log2_q3(self.packets),
            log2_q3(self.bytes),
            log2_q3(self.syns),
            log2_q3(self.new_flows),
            log2_q3(self.icmp),
            distinct(&self.ports),
            distinct(&self.hosts),
            self.gap_mean,
            self.gap_dev,
        ];
    }

    /// Moves the pacing averages towards a gap of `gap_ns`. Both stay in 0..=512 * GAP_ONE.
    #[inline(always)]
    fn pace(&mut self, gap_ns: u64) {
        let diff = log2_q3(gap_ns) * GAP_ONE - self.gap_mean;
        let deviation = if diff < 0 { -diff } else { diff };
        self.gap_dev += (deviation - self.gap_dev) >> GAP_EWMA_SHIFT;
        self.gap_mean += diff >> GAP_EWMA_SHIFT;
    }
}

/// A targeted service: destination address, protocol and destination port (0 without ports).
///
/// # Layout
/// 20 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ServiceKey {
    pub dst: [u8; 16],
    pub dst_port: u16,
    pub protocol: u8,
    pub _pad: u8,
}

/// Per-service state.
///
/// # Layout
/// 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ServiceState {
    pub last_ns: u64,
    /// The window of `sources[0]`.
    pub window: u64,
    /// Decayed counters in [`RATE_ONE`] units: new flows, SYNs without ACK.
    pub new_flows: u64,
    pub syns: u64,
    /// Source hosts heard from: `[current, previous]` window.
    pub sources: [u64; 2],
}

impl ServiceState {
    /// Counts `e` at `now_ns` and writes the service features: log rates of new flows and
    /// SYNs, distinct source hosts.
    #[inline(always)]
    pub fn observe(&mut self, e: &PacketEvent, now_ns: u64, out: &mut [i32; 3]) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        bump(&mut self.new_flows, elapsed, e.new_flow as u64 * RATE_ONE);
        bump(&mut self.syns, elapsed, e.syn as u64 * RATE_ONE);
        let mut bitmaps = [self.sources];
        roll(&mut self.window, now_ns, &mut bitmaps);
        [self.sources] = bitmaps;
        self.sources[0] |= sketch_bit(e.src_host);
        *out = [
            log2_q3(self.new_flows),
            log2_q3(self.syns),
            distinct(&self.sources),
        ];
    }
}

const _: () = assert!(core::mem::size_of::<HostState>() == 112);
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);
const _: () = assert!(core::mem::size_of::<ServiceState>() == 48);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data without padding (size asserts above).
    unsafe impl aya::Pod for super::HostState {}
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceState {}
}

#[cfg(test)]
#[allow(clippy::float_arithmetic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HALF_LIFE_NS: f64 = (1u64 << HALF_LIFE_SHIFT) as f64;

    /// The float model of [`decay`]: exact halvings, the quadratic for the rest of a half-life.
    fn decay_model(value: u64, elapsed_ns: u64) -> f64 {
        let x = elapsed_ns as f64 / HALF_LIFE_NS;
        let whole = x.floor();
        let rest = x - whole;
        let ln2 = core::f64::consts::LN_2;
        value.min(RATE_MAX) as f64
            * 0.5f64.powf(whole)
            * (1.0 - ln2 * rest + (ln2 - 0.5) * rest * rest)
    }

    proptest! {
        #[test]
        fn decay_follows_its_float_model(value in 0..=RATE_MAX, elapsed in 0u64..(60 << HALF_LIFE_SHIFT)) {
            let got = decay(value, elapsed) as f64;
            let want = decay_model(value, elapsed);
            // The 16-bit fraction and factor round (a few 2^-16), the shifts truncate (a unit each).
            prop_assert!(got <= want * (1.0 + 5e-5) + 1.0, "{got} > {want}");
            prop_assert!(got >= want * (1.0 - 5e-5) - 2.0, "{got} < {want}");
        }

        #[test]
        fn decay_is_within_the_chord_error_of_the_true_exponential(value in RATE_ONE..=RATE_MAX, elapsed in 0u64..(20 << HALF_LIFE_SHIFT)) {
            let exact = value as f64 * (-(elapsed as f64) / HALF_LIFE_NS).exp2();
            let got = decay(value, elapsed) as f64;
            prop_assert!(got <= exact * (1.0 + 5e-5) + 1.0, "{got} vs {exact}");
            prop_assert!(got >= exact * (1.0 - 0.0101) - 2.0, "{got} vs {exact}");
        }

        #[test]
        fn decay_never_grows_and_is_monotonic_in_time(value in any::<u64>(), a in any::<u64>(), b in any::<u64>()) {
            let (short, long) = (a.min(b), a.max(b));
            prop_assert!(decay(value, short) <= value.min(RATE_MAX));
            prop_assert!(decay(value, long) <= decay(value, short));
        }

        #[test]
        fn counters_stay_bounded_under_any_packets(events in proptest::collection::vec((any::<u32>(), 0u64..(1 << 31), any::<bool>()), 1..200)) {
            let mut host = HostState::default();
            let mut service = ServiceState::default();
            let mut now = 0u64;
            let mut out = [0; HOST_FEATURES];
            let mut svc = [0; 3];
            for (ip_len, gap, flag) in events {
                now = now.saturating_add(gap);
                let e = PacketEvent { ip_len, new_flow: flag, syn: flag, icmp: !flag, dst_port: ip_len as u16, dst_host: ip_len, src_host: !ip_len };
                host.observe(&e, now, &mut out);
                service.observe(&e, now, &mut svc);
                for c in [host.packets, host.bytes, host.syns, host.new_flows, host.icmp, service.new_flows, service.syns] {
                    prop_assert!(c <= RATE_MAX);
                }
                prop_assert!(out[..5].iter().chain(&svc[..2]).all(|&f| (0..=512).contains(&f)));
                prop_assert!(out[5..7].iter().chain(&svc[2..]).all(|&f| (1..=64).contains(&f)));
                prop_assert!(out[7..].iter().all(|&f| (0..=512 * GAP_ONE).contains(&f)));
            }
        }

        #[test]
        fn log2_q3_is_monotonic_and_tracks_log2(a in 1u64.., b in 1u64..) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(log2_q3(lo) <= log2_q3(hi));
            // The mantissa's chord lies below log2 (by up to 0.09 of a doubling), its
            // truncation below that (by up to one step).
            let l = log2_q3(a) as f64;
            let want = 8.0 * (a as f64).log2() + 1.0;
            prop_assert!(l <= want + 1e-9 && l >= want - 1.8, "{a}: {l} vs {want}");
        }
    }

    #[test]
    fn steady_rate_settles_at_rate_times_tau() {
        // 1,000 events/s for 5 s: about 1000 * 0.387 events.
        let mut c = 0u64;
        for _ in 0..5000 {
            bump(&mut c, 1_000_000, RATE_ONE);
        }
        let events = c as f64 / RATE_ONE as f64;
        let tau = HALF_LIFE_NS / 1e9 / core::f64::consts::LN_2;
        assert!((events / (1000.0 * tau) - 1.0).abs() < 0.01, "{events}");
    }

    /// The same rate, paced by a timer or in bursts: the deviation tells them apart, the
    /// mean does not depend on whether the gaps are even.
    #[test]
    fn pacing_deviation_separates_a_metronome_from_bursts_at_the_same_rate() {
        let run = |gaps: &[u64]| {
            let mut host = HostState::default();
            let mut out = [0; HOST_FEATURES];
            let mut now = 1_000_000_000;
            for _ in 0..300 {
                for gap in gaps {
                    now += gap;
                    host.observe(&PacketEvent::default(), now, &mut out);
                }
            }
            (out[7], out[8])
        };
        // 3,000 packets/s: every 333 us, or 3 packets 12 us apart every 1 ms.
        let (even_mean, even_dev) = run(&[333_000]);
        let (burst_mean, burst_dev) = run(&[12_000, 12_000, 976_000]);
        assert!(even_dev <= GAP_ONE, "a metronome deviates by {even_dev}");
        assert!(
            burst_dev >= 20 * GAP_ONE,
            "bursts deviate by only {burst_dev}"
        );
        assert!((even_mean - log2_q3(333_000) * GAP_ONE).abs() < GAP_ONE);
        assert!(burst_mean < even_mean);
        // Ten times faster, still even: as regular.
        assert!(run(&[33_300]).1 <= GAP_ONE);
    }

    #[test]
    fn log2_q3_values() {
        assert_eq!(
            [0, 1, 2, 3, 8, 255, 256].map(log2_q3),
            [0, 1, 9, 13, 25, 64, 65]
        );
        assert_eq!(log2_q3(u64::MAX), 512);
    }

    #[test]
    fn bitmaps_count_distinct_values_and_forget_old_windows() {
        let mut host = HostState::default();
        let mut out = [0; HOST_FEATURES];
        let window = 1u64 << WINDOW_SHIFT;
        let e = |port| PacketEvent {
            dst_port: port,
            ..PacketEvent::default()
        };
        for port in 0..8 {
            host.observe(&e(port), 10 * window + port as u64, &mut out);
        }
        assert_eq!(out[5], 8, "8 ports (their bits differ)");
        host.observe(&e(0), 11 * window, &mut out);
        assert_eq!(out[5], 8, "the previous window still counts");
        host.observe(&e(0), 12 * window, &mut out);
        assert_eq!(out[5], 1, "two windows later only port 0 is left");
        host.observe(&e(1), 20 * window, &mut out);
        assert_eq!(out[5], 1, "a long gap clears both windows");
    }
}
