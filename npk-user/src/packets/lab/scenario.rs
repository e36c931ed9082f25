//! The lab's scenarios and their settings: every setting is drawn per run from the run's seed,
//! out of one of three disjoint families of values, so that a model trained on runs of family A
//! can be tested on runs whose settings it never saw, in two directions (families B and C).
//! No attack setting value occurs in two families (a unit test checks every pair).
//!
//! | setting | A (training) | B (held out) | C (held out) |
//! |---|---|---|---|
//! | hping3 gap (us) | 400-1,000 or 60-140 | 150-390 (between A's) | 1,001-2,000 or 50-59 (beyond A's) |
//! | hping3 TTL | 64 | 48, 128, 255 | 32, 100, 200 |
//! | SYN window | 512-32,120 (6 values) | 8,192-65,535 (4 values) | 2,048, 16,384, 42,340, 58,400 |
//! | SYN flood port, payload | 80, 0 | 80, 0/16/64 | 5201 (iperf3's), 128/256/512 |
//! | ICMP flood payload | 0-512 | 600-1,400 | 1,401-1,472 |
//! | UDP flood port | 69/161/514/7000, or incrementing from 1,024-30,000 | 53/123/5202/40000 | 137/500/1900/11211, or incrementing from 30,001-60,000 (seed bit 1) |
//! | UDP flood payload | 0-199 or 1,401-1,472 | 600-1,400 | 200-599 |
//! | flood source port | fixed below 1,024 / above 65,000, or changing | fixed, 1,024-65,000 | changing (no port is left) |
//! | attackers per flood | 1, 2 | 1, 3 | 2 |
//! | nmap ports | 1-1,024, or 4,000 from 60,001-61,500 | 4,000 from 1,025-60,000 | 1,500 from 61,501-64,000 |
//! | nmap rate (/s) | 200-600 or 1,600-3,000 | 700-1,500 | 100-199 or 3,001-4,500 |
//! | stealth scan | -sF | -sX, -sN | -sM (Maimon), -sA (ACK) |
//! | nmap source port, TTL | fixed as floods or nmap's; nmap's (40-59 seen) | fixed 1,024-65,000; 64/128 | nmap's; 30/200 |
//! | UDP stream (iperf3) rate (Mbit/s) | 2-6 or 15-30 | 7-14 | 0.5-1.9 or 31-40 |
//! | UDP stream datagram | 100-199 or 1,401-1,472 (as A's floods in that run) | 200-900 | 901-1,400 |
//! | UDP stream pacing timer, source port | 4-10 ms, A's flood ports | 1 ms, ephemeral | 1.5-3.5 ms, 1,024-32,767 |
//! | web objects, requests/s | 1-2 KiB, 5-15 | 4-64 KiB, 16-40 | 8/32 KiB, 41-60 |
//! | web-large object, rate (B/s) | 1 MiB, 0.5-1.5 M | 8 MiB, 1.6-4 M | 4 MiB, 0.2-0.5 M |
//! | slow-client rate (B/s) | 8,000-24,000 | 2,000-6,000 | 6,001-7,999 |
//! | dig batch, pause (ms), type | 2-5, 100-300, A/AAAA | 6-12, 301-800, MX/TXT | 13-20, 30-99, NS/SRV |
//! | TCP stream rate (Mbit/s), write | 5-15, 128 KiB | 16-40, 16 KiB/1,000 | 1-5, 64/4 KiB |
//! | ping interval (ms), payload, TTL | 200-500, 56, 64 | 600-1,000, 16/120/1,000, 128/255 | 100-199, 32/300/1,400, 32/200 |
//!
//! Adding C changed no plan of A or B: a family's draws take nothing from the RNG that another
//! family's do not (`Family::Any` draws its pool per setting, from all three).
//!
//! | scenario | class | tool |
//! |---|---|---|
//! | web-small | benign | curl, small objects, a new connection per request |
//! | web-keepalive | benign | curl, small objects over one kept-alive connection |
//! | web-large | benign | curl, megabyte objects at a limited rate |
//! | slow-client | benign | curl reading a large object at a few KB/s |
//! | dns | benign | dig batches against dnsmasq |
//! | bulk-tcp | benign | iperf3 TCP (either direction) |
//! | bulk-udp | benign | iperf3 UDP stream |
//! | ping | benign | ping |
//! | syn-flood | syn_flood | hping3 -S |
//! | udp-flood | udp_flood | hping3 -2 |
//! | icmp-flood | icmp_flood | hping3 -1 |
//! | scan-syn | port_scan | nmap -sS |
//! | scan-connect | port_scan | nmap -sT |
//! | scan-stealth | port_scan | nmap -sF / -sX / -sN |
//! | scan-udp | port_scan | nmap -sU |

use std::{net::Ipv4Addr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    packets::traffic::{BENIGN, CLASS_NAMES},
    rng::Rng,
};

/// The server's TCP ports: nginx, iperf3 TCP, iperf3 UDP (its control connection is TCP too).
pub const HTTP_PORT: u16 = 80;
pub const IPERF_TCP_PORT: u16 = 5201;
pub const IPERF_UDP_PORT: u16 = 5202;
pub const DNS_PORT: u16 = 53;
/// Objects nginx serves: `/o/<bytes>`. A's small objects are 1-2 KiB, B's 4-64 KiB, C's 8 and
/// 32 KiB; A's large object is 1 MiB, B's 8 MiB, C's 4 MiB.
pub const OBJECT_SIZES: [u64; 10] = [
    1 << 10,
    2 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    1 << 20,
    8 << 20,
    8 << 10,
    32 << 10,
    4 << 20,
];
/// Attack scenarios send from at most this many addresses each.
pub const MAX_ATTACKERS: usize = 3;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    clap::ValueEnum,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ToolScenario {
    /// The primary address of the client namespace: a tool that cannot be told its source
    /// address sends from it, so it is given to nmap -sT, which may ignore -S.
    ScanConnect,
    WebSmall,
    WebKeepalive,
    WebLarge,
    SlowClient,
    Dns,
    BulkTcp,
    BulkUdp,
    Ping,
    SynFlood,
    UdpFlood,
    IcmpFlood,
    ScanSyn,
    ScanStealth,
    ScanUdp,
}

impl ToolScenario {
    pub const ALL: [Self; 15] = [
        Self::ScanConnect,
        Self::WebSmall,
        Self::WebKeepalive,
        Self::WebLarge,
        Self::SlowClient,
        Self::Dns,
        Self::BulkTcp,
        Self::BulkUdp,
        Self::Ping,
        Self::SynFlood,
        Self::UdpFlood,
        Self::IcmpFlood,
        Self::ScanSyn,
        Self::ScanStealth,
        Self::ScanUdp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ScanConnect => "scan-connect",
            Self::WebSmall => "web-small",
            Self::WebKeepalive => "web-keepalive",
            Self::WebLarge => "web-large",
            Self::SlowClient => "slow-client",
            Self::Dns => "dns",
            Self::BulkTcp => "bulk-tcp",
            Self::BulkUdp => "bulk-udp",
            Self::Ping => "ping",
            Self::SynFlood => "syn-flood",
            Self::UdpFlood => "udp-flood",
            Self::IcmpFlood => "icmp-flood",
            Self::ScanSyn => "scan-syn",
            Self::ScanStealth => "scan-stealth",
            Self::ScanUdp => "scan-udp",
        }
    }

    /// The label of its packets, an index into [`CLASS_NAMES`].
    pub fn class(self) -> u32 {
        match self {
            Self::SynFlood => 1,
            Self::UdpFlood => 2,
            Self::ScanConnect | Self::ScanSyn | Self::ScanStealth | Self::ScanUdp => 3,
            Self::IcmpFlood => 4,
            _ => BENIGN,
        }
    }

    pub fn class_name(self) -> &'static str {
        CLASS_NAMES[self.class() as usize]
    }

    pub fn is_attack(self) -> bool {
        self.class() != BENIGN
    }
}

/// Which pool each setting is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// The training family.
    A,
    /// Values disjoint from A's: the held-out family.
    B,
    /// Values disjoint from A's and from B's: the second held-out family.
    C,
    /// Any of the three pools, per setting.
    Any,
}

/// Draws settings of one family.
struct Draw<'a> {
    rng: &'a mut Rng,
    family: Family,
}

impl Draw<'_> {
    /// The pool of the next setting: the run's family, or one of the three for `Any`. Draws
    /// nothing from the RNG for A, B and C, so that adding a pool changes no plan of the others.
    fn pool(&mut self) -> Family {
        match self.family {
            Family::Any => [Family::A, Family::B, Family::C][self.rng.below(3)],
            f => f,
        }
    }

    fn use_a(&mut self) -> bool {
        self.pool() == Family::A
    }

    fn pick<T: Copy>(&mut self, a: &[T], b: &[T], c: &[T]) -> T {
        let pool = match self.pool() {
            Family::A => a,
            Family::B => b,
            _ => c,
        };
        pool[self.rng.below(pool.len())]
    }

    /// Uniform in family A's, B's or C's inclusive range.
    fn range(&mut self, a: (i64, i64), b: (i64, i64), c: (i64, i64)) -> i64 {
        let (lo, hi) = match self.pool() {
            Family::A => a,
            Family::B => b,
            _ => c,
        };
        self.rng.range_i64(lo, hi)
    }
}

/// What hping3 sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HpingMode {
    Syn,
    Udp,
    Icmp,
}

/// Destination port of a flood: one port, or one more every packet from a base (`-p ++N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortPattern {
    Fixed(u16),
    Incrementing(u16),
}

/// nmap's scan technique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NmapTechnique {
    #[serde(rename = "-sS")]
    Syn,
    #[serde(rename = "-sT")]
    Connect,
    #[serde(rename = "-sF")]
    Fin,
    #[serde(rename = "-sX")]
    Xmas,
    #[serde(rename = "-sN")]
    Null,
    /// Maimon: FIN/ACK probes.
    #[serde(rename = "-sM")]
    Maimon,
    /// ACK probes (firewall mapping).
    #[serde(rename = "-sA")]
    Ack,
    #[serde(rename = "-sU")]
    Udp,
}

impl NmapTechnique {
    fn flag(self) -> &'static str {
        match self {
            Self::Syn => "-sS",
            Self::Connect => "-sT",
            Self::Fin => "-sF",
            Self::Xmas => "-sX",
            Self::Null => "-sN",
            Self::Maimon => "-sM",
            Self::Ack => "-sA",
            Self::Udp => "-sU",
        }
    }
}

/// One scenario's settings for one run (recorded in the manifest).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "tool", rename_all = "kebab-case")]
pub enum Settings {
    Curl {
        object_bytes: u64,
        requests: u64,
        requests_per_s: u32,
        keep_alive: bool,
        /// curl --limit-rate, bytes per second.
        limit_bytes_per_s: Option<u64>,
    },
    Dig {
        /// Queries per batch (one dig process each) and the pause between batches.
        batch: u32,
        pause_ms: u64,
        qtype: &'static str,
    },
    Iperf3 {
        udp: bool,
        /// The server sends (-R): then what arrives at the server is ACKs.
        reverse: bool,
        bits_per_s: u64,
        /// -l: bytes per write (UDP: per datagram).
        length: u32,
        port: u16,
        /// --pacing-timer, microseconds (otherwise iperf3's 1,000): how long iperf3 waits
        /// between bursts of datagrams.
        pacing_timer_us: Option<u32>,
        /// --cport: the data stream's source port (otherwise an ephemeral one).
        client_port: Option<u16>,
    },
    Ping {
        interval_ms: u64,
        payload: u32,
        ttl: u8,
        count: u64,
    },
    Hping3 {
        mode: HpingMode,
        dst_port: Option<PortPattern>,
        window: Option<u16>,
        ttl: u8,
        payload: u32,
        gap_us: u64,
        /// `-k -s PORT`: one source port (otherwise hping3 changes it every packet).
        fixed_src_port: Option<u16>,
        /// Per attacking address.
        count: u64,
    },
    Nmap {
        technique: NmapTechnique,
        first_port: u16,
        last_port: u16,
        max_rate: u32,
        /// --ttl (otherwise nmap's raw scans pick a random TTL per run).
        ttl: Option<u8>,
        /// -g: one source port for raw scans.
        src_port: Option<u16>,
    },
}

/// One scenario of one run: its settings, its source addresses and when it runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planned {
    pub scenario: ToolScenario,
    pub settings: Settings,
    pub sources: Vec<Ipv4Addr>,
    /// From the run's start.
    pub start: Duration,
    pub duration: Duration,
}

/// How many source addresses each scenario of `scenarios` gets in a run of `seed`/`family`.
pub fn address_counts(scenarios: &[ToolScenario], seed: u64, family: Family) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ 0xadd5);
    let mut d = Draw {
        rng: &mut rng,
        family,
    };
    scenarios
        .iter()
        .map(|s| match s {
            ToolScenario::SynFlood | ToolScenario::UdpFlood | ToolScenario::IcmpFlood => {
                d.pick(&[1, 2], &[3, 1], &[2]).min(MAX_ATTACKERS)
            }
            _ => 1,
        })
        .collect()
}

/// Family A's UDP payload sizes (floods and streams): at most this, or at least
/// `A_UDP_LARGE_MIN` (B: streams 200-900 bytes, floods 600-1400).
const A_UDP_SMALL_MAX: i64 = 199;
const A_UDP_LARGE_MIN: i64 = 1401;
/// The largest UDP payload in one 1500-byte IPv4 frame.
const MAX_UDP_PAYLOAD: i64 = 1472;

/// Family C's UDP payload sizes: floods 200-599 bytes (between A's small ones and B's), streams
/// 901-1400 (between B's and A's large ones): C's floods are the smaller, unlike B's.
const C_UDP_FLOOD: (i64, i64) = (200, 599);
const C_UDP_STREAM: (i64, i64) = (901, 1400);

/// A fixed source port of family A: below 1024 or above 65000 (B draws 1024-65000).
fn a_src_port(rng: &mut Rng) -> u16 {
    if rng.bool(0.5) {
        rng.range_i64(1, 1023) as u16
    } else {
        rng.range_i64(65_001, 65_535) as u16
    }
}

/// Draws the settings and time window of `scenario` for a run of `run` seconds.
pub fn plan(
    scenario: ToolScenario,
    sources: Vec<Ipv4Addr>,
    run: Duration,
    seed: u64,
    family: Family,
) -> Planned {
    let mut rng = Rng::new(seed ^ (scenario as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let secs = run.as_secs_f64();
    // Benign traffic runs the whole run; an attack starts in its first 40% and lasts 30-60%.
    let (start, duration) = if scenario.is_attack() {
        let start = secs * (0.05 + 0.35 * rng.next_f64());
        let length = secs * (0.3 + 0.3 * rng.next_f64());
        (start, length.min(secs - start))
    } else {
        (0.0, secs)
    };
    let mut d = Draw {
        rng: &mut rng,
        family,
    };
    // Family A's structural choices alternate with the seed (not drawn), so that every few
    // consecutive runs hold each of them: a fixed or changing source port (odd/even seed,
    // offset per scenario), a UDP flood to one port or to incrementing ports (seed bit 1).
    let mut a_fixed_src_port = seed.wrapping_add(scenario as u64).is_multiple_of(2);
    let mut a_fixed_dst_port = seed & 2 == 0;
    // A's UDP floods: one flow (as all of B's) on half the seeds, incrementing destination
    // ports from one source port or one destination port from changing ones on a quarter each.
    if scenario == ToolScenario::UdpFlood {
        (a_fixed_src_port, a_fixed_dst_port) = match seed % 4 {
            0 | 1 => (true, true),
            2 => (true, false),
            _ => (false, true),
        };
    }
    // A's UDP floods and benign UDP streams are small (below any B size) or large (above any
    // B size), the same choice in one run (seed bit 2), so that a datagram's size says nothing
    // about which of the two it is: B's floods are larger than its streams.
    let a_small_udp = seed & 4 != 0;
    let a_udp_size = |rng: &mut Rng, small_min: i64| {
        if a_small_udp {
            rng.range_i64(small_min, A_UDP_SMALL_MAX)
        } else {
            rng.range_i64(A_UDP_LARGE_MIN, MAX_UDP_PAYLOAD)
        }
    };
    let count_for = |gap_us: u64| ((duration * 1e6) / gap_us as f64).ceil() as u64 + 1;
    let settings = match scenario {
        ToolScenario::WebSmall | ToolScenario::WebKeepalive => {
            let keep_alive = scenario == ToolScenario::WebKeepalive;
            let requests_per_s = d.range((5, 15), (16, 40), (41, 60)) as u32;
            Settings::Curl {
                object_bytes: d.pick(&OBJECT_SIZES[..2], &OBJECT_SIZES[2..5], &OBJECT_SIZES[7..9]),
                requests: (duration * f64::from(requests_per_s)).ceil() as u64,
                requests_per_s,
                keep_alive,
                limit_bytes_per_s: None,
            }
        }
        ToolScenario::WebLarge => Settings::Curl {
            object_bytes: d.pick(&OBJECT_SIZES[5..6], &OBJECT_SIZES[6..7], &OBJECT_SIZES[9..]),
            requests: 1000,
            requests_per_s: 50,
            keep_alive: true,
            limit_bytes_per_s: Some(d.range(
                (500_000, 1_500_000),
                (1_600_000, 4_000_000),
                (200_000, 499_999),
            ) as u64),
        },
        ToolScenario::SlowClient => Settings::Curl {
            object_bytes: OBJECT_SIZES[6],
            requests: 1,
            requests_per_s: 1,
            keep_alive: true,
            limit_bytes_per_s: Some(d.range((8_000, 24_000), (2_000, 6_000), (6_001, 7_999)) as u64),
        },
        ToolScenario::Dns => Settings::Dig {
            batch: d.range((2, 5), (6, 12), (13, 20)) as u32,
            pause_ms: d.range((100, 300), (301, 800), (30, 99)) as u64,
            qtype: d.pick(&["A", "AAAA"], &["MX", "TXT"], &["NS", "SRV"]),
        },
        ToolScenario::BulkTcp => Settings::Iperf3 {
            udp: false,
            reverse: d.rng.bool(0.5),
            bits_per_s: d.range(
                (5_000_000, 15_000_000),
                (16_000_000, 40_000_000),
                (1_000_000, 4_999_999),
            ) as u64,
            length: d.pick(&[131_072], &[16_384, 1_000], &[65_536, 4_096]),
            port: IPERF_TCP_PORT,
            pacing_timer_us: None,
            client_port: None,
        },
        ToolScenario::BulkUdp => {
            // A: a slow or a fast stream (B's rates lie between the two), B: in between, C:
            // slower or faster than any of A's.
            let bits_per_s = match d.pool() {
                Family::A => {
                    let fast = d.rng.bool(0.5);
                    d.rng.range_i64(
                        if fast { 15_000_000 } else { 2_000_000 },
                        if fast { 30_000_000 } else { 6_000_000 },
                    )
                }
                Family::B => d.rng.range_i64(7_000_000, 14_000_000),
                _ => {
                    if d.rng.bool(0.5) {
                        d.rng.range_i64(500_000, 1_900_000)
                    } else {
                        d.rng.range_i64(31_000_000, 40_000_000)
                    }
                }
            };
            Settings::Iperf3 {
                udp: true,
                reverse: false,
                bits_per_s: bits_per_s as u64,
                length: match d.pool() {
                    Family::A => a_udp_size(d.rng, 100),
                    Family::B => d.rng.range_i64(200, 900),
                    _ => d.rng.range_i64(C_UDP_STREAM.0, C_UDP_STREAM.1),
                } as u32,
                port: IPERF_UDP_PORT,
                // A: a coarser timer than B's default, so that A's slow streams come in
                // bursts too, as B's faster ones do (a flood tool's timer sends one by one);
                // C: between B's 1 ms and A's.
                pacing_timer_us: match d.pool() {
                    Family::A => Some(d.rng.range_i64(4_000, 10_000) as u32),
                    Family::B => None,
                    _ => Some(d.rng.range_i64(1_500, 3_500) as u32),
                },
                // A: a source port from the ranges of A's floods, so that it says nothing
                // about which of the two a datagram is (B: ephemeral, B's floods 1024-65000;
                // C: 1024-32767, below Linux's ephemeral ports, where B's floods send from).
                client_port: match d.pool() {
                    Family::A => Some(a_src_port(d.rng)),
                    Family::B => None,
                    _ => Some(d.rng.range_i64(1024, 32_767) as u16),
                },
            }
        }
        ToolScenario::Ping => {
            let interval_ms = d.range((200, 500), (600, 1000), (100, 199)) as u64;
            Settings::Ping {
                interval_ms,
                payload: d.pick(&[56], &[16, 120, 1000], &[32, 300, 1400]),
                ttl: d.pick(&[64], &[128, 255], &[32, 200]),
                count: (duration * 1000.0 / interval_ms as f64).ceil() as u64,
            }
        }
        ToolScenario::SynFlood | ToolScenario::UdpFlood | ToolScenario::IcmpFlood => {
            // A: slower or faster than any B flood (B's rates lie between the two); C: slower
            // or faster than any A flood.
            let gap_us = match d.pool() {
                Family::A => {
                    if d.rng.bool(0.5) {
                        d.rng.range_i64(400, 1000)
                    } else {
                        d.rng.range_i64(60, 140)
                    }
                }
                Family::B => d.rng.range_i64(150, 390),
                _ => {
                    if d.rng.bool(0.5) {
                        d.rng.range_i64(1_001, 2_000)
                    } else {
                        d.rng.range_i64(50, 59)
                    }
                }
            } as u64;
            let mode = match scenario {
                ToolScenario::SynFlood => HpingMode::Syn,
                ToolScenario::UdpFlood => HpingMode::Udp,
                _ => HpingMode::Icmp,
            };
            let dst_port = match mode {
                // A and B: nginx's port; C: iperf3's TCP port (a registered port, not a
                // well-known one).
                HpingMode::Syn => Some(PortPattern::Fixed(if d.pool() == Family::C {
                    IPERF_TCP_PORT
                } else {
                    HTTP_PORT
                })),
                // A: incrementing or one port (never one of B's); B: one port; C: one port
                // (none of A's or B's) or incrementing from above A's bases, on alternate
                // seeds (seed bit 1).
                HpingMode::Udp => Some(match d.pool() {
                    Family::A => {
                        if a_fixed_dst_port {
                            PortPattern::Fixed([69, 161, 514, 7000][d.rng.below(4)])
                        } else {
                            PortPattern::Incrementing(d.rng.range_i64(1024, 30_000) as u16)
                        }
                    }
                    Family::B => PortPattern::Fixed([DNS_PORT, 123, 5202, 40_000][d.rng.below(4)]),
                    _ => {
                        if seed & 2 == 0 {
                            PortPattern::Fixed([137, 500, 1900, 11_211][d.rng.below(4)])
                        } else {
                            PortPattern::Incrementing(d.rng.range_i64(30_001, 60_000) as u16)
                        }
                    }
                }),
                HpingMode::Icmp => None,
            };
            let payload = match mode {
                HpingMode::Syn => d.pick(&[0], &[0, 16, 64], &[128, 256, 512]),
                HpingMode::Udp => match d.pool() {
                    Family::A => a_udp_size(d.rng, 0) as u32,
                    Family::B => d.rng.range_i64(600, 1400) as u32,
                    _ => d.rng.range_i64(C_UDP_FLOOD.0, C_UDP_FLOOD.1) as u32,
                },
                HpingMode::Icmp => d.range((0, 512), (600, 1400), (1401, 1472)) as u32,
            };
            // A: half its floods keep one source port, from outside B's range; B: always one;
            // C: never (A's and B's ranges leave no port over: hping3 changes it every
            // packet, as on half of A's floods).
            let fixed_src_port = if mode == HpingMode::Icmp {
                None
            } else {
                match d.pool() {
                    Family::A => a_fixed_src_port.then(|| a_src_port(d.rng)),
                    Family::B => Some(d.rng.range_i64(1024, 65_000) as u16),
                    _ => None,
                }
            };
            Settings::Hping3 {
                mode,
                dst_port,
                window: (mode == HpingMode::Syn).then(|| {
                    d.pick(
                        &[512, 1024, 4096, 5_840, 14_600, 32_120],
                        &[64_240, 29_200, 65_535, 8_192],
                        &[2_048, 16_384, 42_340, 58_400],
                    )
                }),
                ttl: d.pick(&[64], &[128, 255, 48], &[32, 100, 200]),
                payload,
                gap_us,
                fixed_src_port,
                count: count_for(gap_us),
            }
        }
        ToolScenario::ScanSyn
        | ToolScenario::ScanConnect
        | ToolScenario::ScanStealth
        | ToolScenario::ScanUdp => {
            let technique = match scenario {
                ToolScenario::ScanSyn => NmapTechnique::Syn,
                ToolScenario::ScanConnect => NmapTechnique::Connect,
                ToolScenario::ScanUdp => NmapTechnique::Udp,
                _ => d.pick(
                    &[NmapTechnique::Fin],
                    &[NmapTechnique::Xmas, NmapTechnique::Null],
                    &[NmapTechnique::Maimon, NmapTechnique::Ack],
                ),
            };
            let raw = technique != NmapTechnique::Connect;
            // A: the well-known ports or a range above B's bases; B: 4,000 ports from a base
            // in 1025-60000; C: 1,500 ports from a base above A's.
            let (first_port, span) = match d.pool() {
                Family::A => {
                    if d.rng.bool(0.5) {
                        (1, 1023)
                    } else {
                        (d.rng.range_i64(60_001, 61_500) as u16, 4000)
                    }
                }
                Family::B => (d.rng.range_i64(1025, 60_000) as u16, 4000),
                _ => (d.rng.range_i64(61_501, 64_000) as u16, 1500),
            };
            // A: slower or faster than any B scan; C: slower or faster than any A scan.
            let max_rate = match d.pool() {
                Family::A => {
                    if d.rng.bool(0.5) {
                        d.rng.range_i64(200, 600)
                    } else {
                        d.rng.range_i64(1_600, 3_000)
                    }
                }
                Family::B => d.rng.range_i64(700, 1500),
                _ => {
                    if d.rng.bool(0.5) {
                        d.rng.range_i64(100, 199)
                    } else {
                        d.rng.range_i64(3_001, 4_500)
                    }
                }
            } as u32;
            let ttl = (raw && !d.use_a()).then(|| d.pick(&[64], &[64, 128], &[30, 200]));
            // A: half its raw scans from one source port outside B's range; B: always one; C:
            // never (nmap's own choice).
            let src_port = if !raw {
                None
            } else {
                match d.pool() {
                    Family::A => a_fixed_src_port.then(|| a_src_port(d.rng)),
                    Family::B => Some(d.rng.range_i64(1024, 65_000) as u16),
                    _ => None,
                }
            };
            Settings::Nmap {
                technique,
                first_port,
                last_port: first_port.saturating_add(span),
                max_rate,
                ttl,
                src_port,
            }
        }
    };
    Planned {
        scenario,
        settings,
        sources,
        start: Duration::from_secs_f64(start),
        duration: Duration::from_secs_f64(duration.max(0.5)),
    }
}

/// Where a client's tool talks to and through which interface.
pub struct Target<'a> {
    pub server: Ipv4Addr,
    /// The client namespace's veth end (nmap's -e).
    pub client_if: &'a str,
}

impl Planned {
    /// The command lines (one per source address for floods, else one), each bounded by
    /// `timeout` and by a count.
    pub fn commands(&self, target: &Target) -> Vec<Vec<String>> {
        let server = target.server.to_string();
        // A second past the window for the tool to end on its own count first.
        let bound = |argv: Vec<String>| {
            let mut v = vec![
                "timeout".to_string(),
                "-k".into(),
                "1".into(),
                format!("{:.1}", self.duration.as_secs_f64() + 1.0),
            ];
            v.extend(argv);
            v
        };
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let src = self.sources[0].to_string();
        match &self.settings {
            Settings::Curl {
                object_bytes,
                requests,
                requests_per_s,
                keep_alive,
                limit_bytes_per_s,
            } => {
                let mut v = s(&["curl", "-s", "-o", "/dev/null", "--interface", &src]);
                v.extend(s(&["--rate", &format!("{requests_per_s}/s")]));
                if !keep_alive {
                    v.extend(s(&["-H", "Connection: close"]));
                }
                if let Some(rate) = limit_bytes_per_s {
                    v.extend(s(&["--limit-rate", &rate.to_string()]));
                }
                // URL globbing: `requests` transfers from one process, output discarded.
                v.push(format!(
                    "http://{server}/o/{object_bytes}?[1-{}]",
                    (*requests).max(1)
                ));
                vec![bound(v)]
            }
            Settings::Dig {
                batch,
                pause_ms,
                qtype,
            } => {
                let names: Vec<String> = (0..*batch)
                    .map(|i| format!("h{i}-$n.example.test {qtype}"))
                    .collect();
                let script = format!(
                    "n=0; while :; do n=$((n+1)); printf '{}\\n' | dig -b {src} @{server} +tries=1 +time=1 -f - >/dev/null; sleep {:.3}; done",
                    names.join("\\n"),
                    *pause_ms as f64 / 1000.0
                );
                vec![bound(s(&["sh", "-c", &script]))]
            }
            Settings::Iperf3 {
                udp,
                reverse,
                bits_per_s,
                length,
                port,
                pacing_timer_us,
                client_port,
            } => {
                let mut v = s(&["iperf3", "-c", &server, "-B", &src, "-p", &port.to_string()]);
                if let Some(timer) = pacing_timer_us {
                    v.extend(s(&["--pacing-timer", &timer.to_string()]));
                }
                if let Some(port) = client_port {
                    v.extend(s(&["--cport", &port.to_string()]));
                }
                v.extend(s(&["-t", &format!("{}", self.duration.as_secs().max(1))]));
                v.extend(s(&[
                    "-b",
                    &bits_per_s.to_string(),
                    "-l",
                    &length.to_string(),
                ]));
                if *udp {
                    v.push("-u".into());
                }
                if *reverse {
                    v.push("-R".into());
                }
                vec![bound(v)]
            }
            Settings::Ping {
                interval_ms,
                payload,
                ttl,
                count,
            } => vec![bound(s(&[
                "ping",
                "-q",
                "-n",
                "-I",
                &src,
                "-i",
                &format!("{:.3}", *interval_ms as f64 / 1000.0),
                "-s",
                &payload.to_string(),
                "-t",
                &ttl.to_string(),
                "-c",
                &count.to_string(),
                &server,
            ]))],
            Settings::Hping3 {
                mode,
                dst_port,
                window,
                ttl,
                payload,
                gap_us,
                fixed_src_port,
                count,
            } => self
                .sources
                .iter()
                .map(|a| {
                    let mut v = s(&["hping3", "-q", "-n", "-a", &a.to_string()]);
                    v.push(
                        match mode {
                            HpingMode::Syn => "-S",
                            HpingMode::Udp => "-2",
                            HpingMode::Icmp => "-1",
                        }
                        .into(),
                    );
                    match dst_port {
                        Some(PortPattern::Fixed(p)) => v.extend(s(&["-p", &p.to_string()])),
                        Some(PortPattern::Incrementing(p)) => {
                            v.extend(s(&["-p", &format!("++{p}")]))
                        }
                        None => {}
                    }
                    if let Some(w) = window {
                        v.extend(s(&["-w", &w.to_string()]));
                    }
                    if let Some(p) = fixed_src_port {
                        v.extend(s(&["-k", "-s", &p.to_string()]));
                    }
                    v.extend(s(&["-t", &ttl.to_string(), "-d", &payload.to_string()]));
                    v.extend(s(&["-i", &format!("u{gap_us}"), "-c", &count.to_string()]));
                    v.push(server.clone());
                    bound(v)
                })
                .collect(),
            Settings::Nmap {
                technique,
                first_port,
                last_port,
                max_rate,
                ttl,
                src_port,
            } => {
                let mut v = s(&[
                    "nmap",
                    technique.flag(),
                    "-n",
                    "-Pn",
                    "-e",
                    target.client_if,
                ]);
                v.extend(s(&["-S", &src, "--max-retries", "0", "-T4"]));
                v.extend(s(&["--max-rate", &max_rate.to_string()]));
                v.extend(s(&["-p", &format!("{first_port}-{last_port}")]));
                if let Some(t) = ttl {
                    v.extend(s(&["--ttl", &t.to_string()]));
                }
                if let Some(p) = src_port {
                    v.extend(s(&["-g", &p.to_string()]));
                }
                v.extend(s(&["-oN", "/dev/null", &server]));
                vec![bound(v)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_plans(seed: u64, family: Family) -> Vec<Planned> {
        ToolScenario::ALL
            .iter()
            .map(|&s| {
                plan(
                    s,
                    vec![Ipv4Addr::new(10, 0, 0, 2)],
                    Duration::from_secs(20),
                    seed,
                    family,
                )
            })
            .collect()
    }

    #[test]
    fn no_two_families_share_an_attack_setting() {
        let key = |p: &Planned| match &p.settings {
            Settings::Hping3 {
                window,
                ttl,
                payload,
                gap_us,
                dst_port,
                fixed_src_port,
                ..
            } => vec![
                format!("window {window:?}"),
                format!("ttl {ttl}"),
                format!("gap {gap_us}"),
                format!("payload {payload} {:?}", p.scenario),
                format!("dst {dst_port:?} {:?}", p.scenario),
                format!("src {fixed_src_port:?}"),
            ],
            Settings::Nmap {
                technique,
                first_port,
                max_rate,
                src_port,
                ..
            } => {
                let mut keys = vec![
                    format!("ports {first_port}"),
                    format!("rate {max_rate}"),
                    format!("src {src_port:?}"),
                ];
                if p.scenario == ToolScenario::ScanStealth {
                    keys.push(format!("technique {technique:?}"));
                }
                keys
            }
            Settings::Iperf3 {
                udp: true,
                bits_per_s,
                length,
                pacing_timer_us,
                ..
            } => vec![
                format!("udp {bits_per_s}"),
                format!("udp length {length}"),
                format!("pacing {pacing_timer_us:?}"),
            ],
            _ => vec![],
        };
        let collect = |family| {
            let mut seen = std::collections::HashSet::new();
            for seed in 0..50 {
                for p in all_plans(seed, family) {
                    seen.extend(key(&p).into_iter().filter(|k| {
                        !k.contains("payload 0 Syn")
                            && k != "window None"
                            && k != "src None"
                            && !k.contains("Some(Fixed(80)) SynFlood")
                            && !k.starts_with("dst None")
                    }));
                }
            }
            seen
        };
        let (a, b, c) = (collect(Family::A), collect(Family::B), collect(Family::C));
        for (x, y, names) in [
            (&a, &b, "A and B"),
            (&a, &c, "A and C"),
            (&b, &c, "B and C"),
        ] {
            let shared: Vec<_> = x.intersection(y).collect();
            assert!(shared.is_empty(), "settings in both {names}: {shared:?}");
        }
        // C is not an empty family: each attack tool draws settings of its own.
        for k in [
            "window",
            "ttl",
            "gap",
            "ports",
            "rate",
            "pacing",
            "technique",
        ] {
            assert!(c.iter().any(|s| s.starts_with(k)), "family C draws no {k}");
        }
    }

    /// Family C's benign settings differ from A's and B's where those two differ.
    #[test]
    fn family_c_draws_benign_settings_of_its_own() {
        let benign =
            |family| {
                let mut seen = std::collections::HashSet::new();
                for seed in 0..50 {
                    for p in all_plans(seed, family) {
                        seen.insert(match p.settings {
                        Settings::Curl {
                            object_bytes,
                            requests_per_s,
                            keep_alive,
                            limit_bytes_per_s,
                            ..
                        } => format!(
                            "curl {object_bytes} {} {keep_alive} {limit_bytes_per_s:?}",
                            if limit_bytes_per_s.is_some() { 0 } else { requests_per_s }
                        ),
                        Settings::Dig {
                            batch,
                            pause_ms,
                            qtype,
                        } => format!("dig {batch} {pause_ms} {qtype}"),
                        Settings::Iperf3 {
                            udp,
                            bits_per_s,
                            length,
                            pacing_timer_us,
                            client_port,
                            ..
                        } => format!(
                            "iperf3 {udp} {bits_per_s} {length} {pacing_timer_us:?} {client_port:?}"
                        ),
                        Settings::Ping {
                            interval_ms,
                            payload,
                            ttl,
                            ..
                        } => format!("ping {interval_ms} {payload} {ttl}"),
                        _ => continue,
                    });
                    }
                }
                seen
            };
        let (a, b, c) = (benign(Family::A), benign(Family::B), benign(Family::C));
        assert!(c.len() >= 100, "{} benign settings in C", c.len());
        for other in [&a, &b] {
            let shared: Vec<_> = c.intersection(other).collect();
            assert!(
                shared.is_empty(),
                "benign settings of C in A or B: {shared:?}"
            );
        }
    }

    /// Family A spans the structural choices (one or changing source ports, one or changing
    /// destination ports, slower and faster than B) so that a model cannot learn one of them
    /// as "the attack"; only the values differ from B's.
    #[test]
    fn family_a_spans_both_source_port_choices_and_rates_around_b() {
        let (mut fixed_src, mut changing_src, mut fixed_dst, mut incrementing_dst) = (0, 0, 0, 0);
        let (mut slow, mut fast, mut one_flow_udp) = (0, 0, 0);
        for seed in 0..50 {
            for p in all_plans(seed, Family::A) {
                match p.settings {
                    Settings::Hping3 {
                        mode,
                        dst_port,
                        fixed_src_port,
                        gap_us,
                        ..
                    } => {
                        if mode != HpingMode::Icmp {
                            *if fixed_src_port.is_some() {
                                &mut fixed_src
                            } else {
                                &mut changing_src
                            } += 1;
                        }
                        if mode == HpingMode::Udp
                            && fixed_src_port.is_some()
                            && matches!(dst_port, Some(PortPattern::Fixed(_)))
                        {
                            one_flow_udp += 1;
                        }
                        match dst_port {
                            Some(PortPattern::Fixed(_)) if mode == HpingMode::Udp => fixed_dst += 1,
                            Some(PortPattern::Incrementing(_)) => incrementing_dst += 1,
                            _ => {}
                        }
                        *if gap_us > 390 { &mut slow } else { &mut fast } += 1;
                    }
                    Settings::Nmap { max_rate, .. } => {
                        *if max_rate < 700 { &mut slow } else { &mut fast } += 1;
                    }
                    _ => {}
                }
            }
        }
        for (what, n) in [
            ("fixed source port", fixed_src),
            ("changing source port", changing_src),
            ("one UDP destination port", fixed_dst),
            ("incrementing destination port", incrementing_dst),
            ("slower than B", slow),
            ("faster than B", fast),
        ] {
            assert!(n >= 10, "family A has {n} attacks with {what} in 50 runs");
        }
        // B's UDP floods are one flow each: A holds them in half its runs.
        assert!(
            one_flow_udp >= 25,
            "family A has {one_flow_udp} one-flow UDP floods in 50 runs"
        );
    }

    /// Within family A a UDP datagram's size cannot tell a flood from a benign stream: both
    /// come small and large, in the same runs.
    #[test]
    fn family_a_udp_floods_and_streams_share_their_sizes() {
        let mut sizes = std::collections::HashSet::new();
        for seed in 0..50 {
            for p in all_plans(seed, Family::A) {
                let (flood, bytes) = match p.settings {
                    Settings::Hping3 {
                        mode: HpingMode::Udp,
                        payload,
                        ..
                    } => (true, payload),
                    Settings::Iperf3 {
                        udp: true, length, ..
                    } => (false, length),
                    _ => continue,
                };
                sizes.insert((flood, seed, i64::from(bytes) > A_UDP_SMALL_MAX));
            }
        }
        for seed in 0..50 {
            for large in [false, true] {
                assert_eq!(
                    sizes.contains(&(true, seed, large)),
                    sizes.contains(&(false, seed, large)),
                    "seed {seed}: floods and streams differ in size (large {large})"
                );
            }
        }
        for large in [false, true] {
            assert!(
                sizes.iter().filter(|s| s.2 == large).count() >= 20,
                "family A has too few runs with large {large} UDP"
            );
        }
    }

    #[test]
    fn plans_follow_the_seed_and_stay_inside_the_run() {
        assert_eq!(all_plans(7, Family::Any), all_plans(7, Family::Any));
        assert_ne!(all_plans(7, Family::Any), all_plans(8, Family::Any));
        assert_ne!(all_plans(7, Family::C), all_plans(8, Family::C));
        for p in all_plans(3, Family::Any) {
            assert!(p.start + p.duration <= Duration::from_secs(20) + Duration::from_millis(1));
            let target = Target {
                server: Ipv4Addr::new(10, 0, 0, 1),
                client_if: "veth0",
            };
            for argv in p.commands(&target) {
                assert_eq!(argv[0], "timeout", "{argv:?} is bounded in time");
            }
        }
    }
}
