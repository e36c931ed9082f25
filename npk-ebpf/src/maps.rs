//! The maps, declared once for all programs in the object. Their names are npk_common's
//! (`maps::MAP_NAMES`, and `PROGRAM_NAMES` for the programs in main.rs): `#[map]` takes only a
//! literal, so a unit test of npk-user (kernel/mod.rs) compares the built object with them.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use npk_common::{
    host::{HostState, ServiceKey, ServiceState},
    infer::Scratch,
    maps::{
        Config, Counters, FLOW_CAPACITY, HOST_CAPACITY, InferenceRecord, MODEL_SLOTS,
        SAMPLES_BYTES, SERVICE_CAPACITY,
    },
    model::Model,
    packet::{FlowKey, FlowState},
    service::wire::{ServeConfig, ServeCounters},
};

#[map(name = "NPK_MODELS")]
pub static MODELS: Array<Model> = Array::with_max_entries(MODEL_SLOTS, 0);
#[map(name = "NPK_SLOT_SEQ")]
pub static SLOT_SEQ: Array<u64> = Array::with_max_entries(MODEL_SLOTS, 0);
#[map(name = "NPK_ACTIVE")]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
#[map(name = "NPK_CONFIG")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map(name = "NPK_SCRATCH")]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "NPK_FLOWS")]
pub static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(FLOW_CAPACITY, 0);
/// Shared (not per-CPU) like NPK_FLOWS: RSS spreads one host's flows over CPUs, and a per-CPU
/// table would see only each CPU's share of its rates (see classify.rs on the races).
#[map(name = "NPK_HOSTS")]
pub static HOSTS: LruHashMap<[u8; 16], HostState> = LruHashMap::with_max_entries(HOST_CAPACITY, 0);
#[map(name = "NPK_SERVICES")]
pub static SERVICES: LruHashMap<ServiceKey, ServiceState> =
    LruHashMap::with_max_entries(SERVICE_CAPACITY, 0);
#[map(name = "NPK_STATS")]
pub static STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "NPK_SAMPLES")]
pub static SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLES_BYTES, 0);
/// Per-CPU working memory of the packet path (see [`PacketScratch`]).
#[map(name = "NPK_PACKET")]
pub static PACKET: PerCpuArray<PacketScratch> = PerCpuArray::with_max_entries(1, 0);

/// Kept in a map rather than on the stack: the 512-byte stack is small, and values in map
/// memory do not multiply the verifier's states.
pub struct PacketScratch {
    /// Copy of the frame's first bytes (see frame.rs).
    pub buf: [u8; crate::frame::HEADER_BUF],
    pub headers: npk_common::packet::Headers,
    /// Flow, host and service state used when their table cannot take the entry.
    pub spare_flow: FlowState,
    pub spare_host: HostState,
    pub spare_service: ServiceState,
    pub service_key: ServiceKey,
    /// The model version and configuration this CPU's last inference ran with, and what of
    /// them (or a swap failure) is to be logged at the end of this run (see classify.rs).
    pub version_seen: u32,
    pub config_seen: ConfigWords,
    pub log_pending: u32,
    /// What the inference stage (model::InferStage) found.
    pub class: u32,
    pub margin: u32,
    /// 1 when the margin reached the model's drop margin.
    pub confident: u32,
    pub version: u32,
    pub sample_window: SampleWindow,
    /// What the reply features are computed from (see classify::npk_reply_stage).
    pub reply_counts: npk_common::packet::ReplyCounts,
}

/// This CPU's sampling second: when it began and the samples taken in it (see classify.rs,
/// `within_sample_rate`).
pub struct SampleWindow {
    pub start_ns: u64,
    pub taken: u32,
}

/// A [`Config`] as the words it is compared by.
pub type ConfigWords = [u32; 6];
#[map(name = "NPK_LAST")]
pub static LAST: Array<InferenceRecord> = Array::with_max_entries(1, 0);

/// The inference server's configuration (npk_common::service::wire::ServeConfig).
#[map(name = "NPK_SERVE_CFG")]
pub static SERVE_CONFIG: Array<ServeConfig> = Array::with_max_entries(1, 0);
#[map(name = "NPK_SERVE_STATS")]
pub static SERVE_STATS: PerCpuArray<ServeCounters> = PerCpuArray::with_max_entries(1, 0);
/// Per-CPU working memory of the inference server.
#[map(name = "NPK_SERVE_BUF")]
pub static SERVE_BUF: PerCpuArray<crate::serve::ServeBuf> = PerCpuArray::with_max_entries(1, 0);

/// The in-kernel load generator and reply counter (npk_common::service::loadgen).
#[map(name = "NPK_LG_CFG")]
pub static LOADGEN_CONFIG: Array<npk_common::service::loadgen::LoadgenConfig> =
    Array::with_max_entries(1, 0);
#[map(name = "NPK_LG_FRAMES")]
pub static LOADGEN_FRAMES: Array<npk_common::service::loadgen::FrameTemplate> =
    Array::with_max_entries(npk_common::service::loadgen::MAX_CASES as u32, 0);
#[map(name = "NPK_LG_EXPECT")]
pub static LOADGEN_EXPECTED: Array<npk_common::service::loadgen::ExpectedReply> =
    Array::with_max_entries(npk_common::service::loadgen::MAX_CASES as u32, 0);
#[map(name = "NPK_LG_STATE")]
pub static LOADGEN_STATE: Array<npk_common::service::loadgen::GenState> =
    Array::with_max_entries(1, 0);
#[map(name = "NPK_LG_STATS")]
pub static LOADGEN_STATS: PerCpuArray<npk_common::service::loadgen::LoadgenCounters> =
    PerCpuArray::with_max_entries(1, 0);
/// Per-CPU copy of the reply being checked.
#[map(name = "NPK_LG_BUF")]
pub static LOADGEN_BUF: PerCpuArray<crate::loadgen::ReplyBuf> = PerCpuArray::with_max_entries(1, 0);
