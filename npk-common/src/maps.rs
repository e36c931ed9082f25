//! Names and value types of the programs and maps, defined once for both sides.
//!
//! # Model slots and the hot swap
//! [`MAP_MODELS`] holds two [`crate::model::Model`] slots; [`MAP_ACTIVE`] says which one packets
//! use; [`MAP_SLOT_SEQ`] holds a sequence counter per slot (odd while userspace writes it).
//! A push writes the inactive slot (seq odd -> write -> seq even) and then flips the active index.
//! The kernel reads the slot's seq before and after an inference and throws the result away if it
//! changed (the slot was rewritten under it by a second push), so no packet is ever classified by a
//! mix of two models. The model version lives in the model header, read inside that window.

use crate::infer::BOUNDED_WIDTHS;
use crate::model::MAX_CLASSES;
use crate::packet::FlowKey;
use crate::service::{loadgen, wire};
use bytemuck::{Pod, Zeroable};

/// The XDP classifier.
pub const PROG_CLASSIFY: &str = "npk_classify";
/// The same classifier as a TC (clsact) program.
pub const PROG_CLASSIFY_TC: &str = "npk_classify_tc";
/// A program that parses like the classifier and passes: the benchmark's baseline.
pub const PROG_BARE: &str = "npk_bare";
/// The TC egress program beside the classifier: counts every packet this machine sends as a
/// reply to its flow and host (see [`crate::packet::observe_reply`]) and passes it.
pub const PROG_EGRESS: &str = "npk_egress";
/// The classifiers' bounded-loop twins, one pair per width of [`BOUNDED_WIDTHS`]: width, XDP
/// program, TC program.
pub const PROG_BOUNDED: [(usize, &str, &str); 3] = [
    (32, "npk_bounded_32", "npk_bnd_tc_32"),
    (64, "npk_bounded_64", "npk_bnd_tc_64"),
    (128, "npk_bounded_128", "npk_bnd_tc_128"),
];
const _: () = assert!(
    PROG_BOUNDED[0].0 == BOUNDED_WIDTHS[0]
        && PROG_BOUNDED[1].0 == BOUNDED_WIDTHS[1]
        && PROG_BOUNDED[2].0 == BOUNDED_WIDTHS[2]
);

/// Every program in the eBPF object. npk-user's tests compare this list and [`MAP_NAMES`] with
/// the names in the built object, so that a rename on either side fails there, not at run time.
pub const PROGRAM_NAMES: [&str; 13] = [
    PROG_CLASSIFY,
    PROG_CLASSIFY_TC,
    PROG_BOUNDED[0].1,
    PROG_BOUNDED[0].2,
    PROG_BOUNDED[1].1,
    PROG_BOUNDED[1].2,
    PROG_BOUNDED[2].1,
    PROG_BOUNDED[2].2,
    PROG_BARE,
    PROG_EGRESS,
    wire::PROG_SERVE,
    loadgen::PROG_LOADGEN,
    loadgen::PROG_REPLIES,
];
/// The kernel keeps 15 bytes of a program's name (BPF_OBJ_NAME_LEN less its NUL), and npk tells
/// its pinned programs apart by that name (kernel::attach::pinned_classifier in npk-user).
const _: () = {
    let mut i = 0;
    while i < PROGRAM_NAMES.len() {
        assert!(
            PROGRAM_NAMES[i].len() <= 15,
            "a program name longer than BPF keeps"
        );
        i += 1;
    }
};
/// Every map in the eBPF object (see [`PROGRAM_NAMES`]).
pub const MAP_NAMES: [&str; 21] = [
    MAP_MODELS,
    MAP_SLOT_SEQ,
    MAP_ACTIVE,
    MAP_CONFIG,
    MAP_SCRATCH,
    MAP_FLOWS,
    MAP_HOSTS,
    MAP_SERVICES,
    MAP_STATS,
    MAP_SAMPLES,
    MAP_PACKET,
    MAP_LAST,
    wire::MAP_SERVE_CONFIG,
    wire::MAP_SERVE_STATS,
    wire::MAP_SERVE_BUF,
    loadgen::MAP_LOADGEN_CONFIG,
    loadgen::MAP_LOADGEN_FRAMES,
    loadgen::MAP_LOADGEN_EXPECTED,
    loadgen::MAP_LOADGEN_STATE,
    loadgen::MAP_LOADGEN_STATS,
    loadgen::MAP_LOADGEN_BUF,
];

/// `Array<Model>`, [`MODEL_SLOTS`] entries.
pub const MAP_MODELS: &str = "NPK_MODELS";
pub const MODEL_SLOTS: u32 = 2;
/// `Array<u64>`, one sequence counter per model slot.
pub const MAP_SLOT_SEQ: &str = "NPK_SLOT_SEQ";
/// `Array<u32>`, one entry: the active slot (0 or 1), or [`NO_MODEL`].
pub const MAP_ACTIVE: &str = "NPK_ACTIVE";
pub const NO_MODEL: u32 = u32::MAX;
/// `Array<Config>`, one entry.
pub const MAP_CONFIG: &str = "NPK_CONFIG";
/// `PerCpuArray<Scratch>`, one entry: features and activations of the running inference.
pub const MAP_SCRATCH: &str = "NPK_SCRATCH";
/// `LruHashMap<FlowKey, FlowState>` (npk_common::packet): per-flow state and the verdict cache.
pub const MAP_FLOWS: &str = "NPK_FLOWS";
pub const FLOW_CAPACITY: u32 = 65536;
/// `LruHashMap<[u8; 16], HostState>`: per-source-address state (npk_common::host).
pub const MAP_HOSTS: &str = "NPK_HOSTS";
pub const HOST_CAPACITY: u32 = 16384;
/// `LruHashMap<ServiceKey, ServiceState>`: per-service state (npk_common::host).
pub const MAP_SERVICES: &str = "NPK_SERVICES";
pub const SERVICE_CAPACITY: u32 = 16384;
/// `PerCpuArray<Counters>`, one entry.
pub const MAP_STATS: &str = "NPK_STATS";
/// `RingBuf` of [`Sample`]s.
pub const MAP_SAMPLES: &str = "NPK_SAMPLES";
pub const SAMPLES_BYTES: u32 = 1 << 20;
/// `PerCpuArray`, one entry: the packet path's working memory (npk-ebpf's `PacketScratch`).
pub const MAP_PACKET: &str = "NPK_PACKET";

/// What the classifier does with a packet of a class.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let it through (counted like every packet).
    Pass = 0,
    Drop = 1,
    /// Let it through; the class exists to be counted.
    Count = 2,
    /// Let it through and copy its features and verdict to the [`MAP_SAMPLES`] ring buffer.
    Sample = 3,
}

impl Action {
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Pass),
            1 => Some(Self::Drop),
            2 => Some(Self::Count),
            3 => Some(Self::Sample),
            _ => None,
        }
    }
}

/// [`Config::flags`]: drop packets that cannot be parsed or classified (default: pass them).
pub const FLAG_FAIL_CLOSED: u32 = 1;
/// [`Config::flags`]: sample every classified packet whatever its class (for `npk capture`).
pub const FLAG_SAMPLE_ALL: u32 = 2;
/// [`Config::flags`]: sample the packets of a drop class that passed because the model's margin
/// was below its drop margin ([`Counters::unsure`] counts them either way).
pub const FLAG_SAMPLE_UNSURE: u32 = 8;
/// [`Config::flags`]: sample every packet the model's verdict dropped (`npk events` reads them).
pub const FLAG_SAMPLE_DROPS: u32 = 16;

/// # Layout
/// 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Config {
    /// Re-run the model on a flow every this many packets (1 = every packet; 0 is read as 1).
    pub reinfer_every: u32,
    pub flags: u32,
    /// An [`Action`] per class.
    pub class_action: [u8; MAX_CLASSES],
    /// At most this many samples per second on each CPU (0: no limit); the others are counted
    /// in [`Counters::samples_limited`]. Keeps a flood's drops from filling the ring buffer.
    pub samples_per_cpu_s: u32,
    pub _pad: u32,
}

impl Config {
    /// What a freshly loaded classifier runs: infer every packet, no flags, pass every class.
    pub const DEFAULT: Self = Self {
        reinfer_every: 1,
        flags: 0,
        class_action: [Action::Pass as u8; MAX_CLASSES],
        samples_per_cpu_s: 0,
        _pad: 0,
    };
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Per-CPU counters. Userspace sums them over CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Counters {
    pub class_packets: [u64; MAX_CLASSES],
    pub class_bytes: [u64; MAX_CLASSES],
    pub dropped: u64,
    /// Frames that are not IP (ARP, ...): always passed.
    pub non_ip: u64,
    /// IP frames with an impossible header.
    pub unparsed: u64,
    /// Frames that ended inside a header.
    pub truncated: u64,
    /// Packets seen with no model loaded.
    pub no_model: u64,
    /// Inferences run (the rest used a cached verdict).
    pub inferences: u64,
    /// Inferences retried because a push rewrote the slot under them.
    pub swap_retries: u64,
    /// Packets given the fail action because retries ran out.
    pub swap_failures: u64,
    /// Samples lost because the ring buffer was full.
    pub samples_lost: u64,
    /// Classified packets that used the flow's cached verdict (no inference).
    pub cache_hits: u64,
    /// Packets of a drop class that passed: the model's margin was below its drop margin.
    pub unsure: u64,
    /// Samples not taken: over [`Config::samples_per_cpu_s`].
    pub samples_limited: u64,
}

impl Counters {
    /// The sum of per-CPU counters (every field is a u64 count), as userspace reports them.
    pub fn sum<'a>(per_cpu: impl IntoIterator<Item = &'a Counters>) -> Counters {
        let mut total: Counters = bytemuck::Zeroable::zeroed();
        let words: &mut [u64] = bytemuck::cast_slice_mut(core::slice::from_mut(&mut total));
        for c in per_cpu {
            let values: &[u64] = bytemuck::cast_slice(core::slice::from_ref(c));
            for (t, v) in words.iter_mut().zip(values) {
                *t += v;
            }
        }
        total
    }
}

/// One sampled packet, as the ring buffer carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Sample {
    pub timestamp_ns: u64,
    pub flow: FlowKey,
    pub class: u32,
    pub model_version: u32,
    /// Whether `class` came from the verdict cache rather than this packet's features.
    pub cached: u32,
    /// The verdict's margin, and 1 when its class's drop was let through under the model's
    /// drop margin.
    pub margin: u32,
    pub unsure: u32,
    /// 1 when the packet was dropped (its class's drop action, confident).
    pub dropped: u32,
    pub features: [i32; crate::packet::NUM_FEATURES],
}

const _: () = assert!(core::mem::size_of::<Config>() == 32);
const _: () = assert!(core::mem::size_of::<Counters>() == 8 * (2 * MAX_CLASSES + 12));

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data without padding (size asserts above).
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Sample {}
}

/// `Array<InferenceRecord>`, one entry: the last classification, written only while
/// [`FLAG_RECORD_LAST`] is set (by `npk verify`, which compares it with the userspace reference).
pub const MAP_LAST: &str = "NPK_LAST";
pub const FLAG_RECORD_LAST: u32 = 4;

/// What happened to the last packet (see [`MAP_LAST`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct InferenceRecord {
    pub now_ns: u64,
    /// Bumped for every recorded packet.
    pub seq: u64,
    /// An [`Outcome`] value.
    pub outcome: u32,
    pub class: u32,
    pub model_version: u32,
    pub cached: u32,
    /// The verdict's margin, and 1 when it reached the model's drop margin.
    pub margin: u32,
    pub confident: u32,
    pub features: [i32; crate::packet::NUM_FEATURES],
    pub logits: [i32; MAX_CLASSES],
    /// When the egress program last counted a reply (its clock, for `npk verify`'s reference).
    pub reply_ns: u64,
}

/// How the classifier finished with a packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Classified = 1,
    NotIp = 2,
    Truncated = 3,
    Malformed = 4,
    NoModel = 5,
    SwapFailure = 6,
}

#[cfg(feature = "user")]
mod pod_record {
    // SAFETY: plain-old-data without padding.
    unsafe impl aya::Pod for super::InferenceRecord {}
}
