//! The classifier shared by the XDP and TC programs: parse, update the flow, infer or reuse the
//! flow's cached verdict, count, act.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::LruHashMap};
use npk_common::{
    infer::margin,
    maps::{
        Action, Config, Counters, FLAG_FAIL_CLOSED, FLAG_RECORD_LAST, FLAG_SAMPLE_ALL,
        FLAG_SAMPLE_DROPS, FLAG_SAMPLE_UNSURE, Outcome, Sample,
    },
    model::{MAX_CLASSES, MAX_INPUTS},
    packet::{
        FlowState, INGRESS_FEATURES, NUM_FEATURES, PacketState, ParseError, observe, parse,
        reply_features,
    },
};

use crate::{
    frame::HeaderBuf,
    maps::{
        CONFIG, ConfigWords, FLOWS, HOSTS, LAST, PACKET, PacketScratch, SAMPLES, SCRATCH, SERVICES,
        STATS, SampleWindow,
    },
    model::{INFERRED, InferStage, RACED, READ_ATTEMPTS, active_model, model_of_version},
};

/// What the program should do with the packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

/// Classifies one frame of `wire_len` bytes (`frame` is `None` when its bytes could not be
/// copied: an empty frame), the model's loops driven by `L`.
#[inline(always)]
pub fn classify<L: InferStage>(frame: Option<HeaderBuf>, wire_len: u64) -> Verdict {
    let config = CONFIG.get(0).unwrap_or(&Config::DEFAULT);
    let fail = if config.flags & FLAG_FAIL_CLOSED != 0 {
        Verdict::Drop
    } else {
        Verdict::Pass
    };
    let Some(stats) = STATS.get_ptr_mut(0) else {
        return fail;
    };
    // SAFETY: per-CPU map value, only this program on this CPU touches it.
    let stats = unsafe { &mut *stats };
    let (outcome, verdict) = match classify_ip::<L>(frame, wire_len, config, stats) {
        Ok(v) => (Outcome::Classified, v),
        Err(Outcome::NotIp) => {
            stats.non_ip += 1;
            (Outcome::NotIp, Verdict::Pass)
        }
        Err(outcome) => {
            match outcome {
                Outcome::Truncated => stats.truncated += 1,
                Outcome::Malformed => stats.unparsed += 1,
                Outcome::NoModel => stats.no_model += 1,
                _ => stats.swap_failures += 1,
            }
            (outcome, fail)
        }
    };
    if outcome != Outcome::Classified && config.flags & FLAG_RECORD_LAST != 0 {
        if let Some(last) = LAST.get_ptr_mut(0) {
            // SAFETY: map value; only `npk verify` reads it, between test runs.
            let last = unsafe { &mut *last };
            last.outcome = outcome as u32;
            last.seq += 1;
        }
    }
    if verdict == Verdict::Drop {
        stats.dropped += 1;
    }
    if let Some(packet) = PACKET.get_ptr_mut(0) {
        // SAFETY: per-CPU map value, used by one program run at a time on this CPU.
        let packet = unsafe { &mut *packet };
        if packet.log_pending != 0 {
            npk_log_events();
        }
    }
    verdict
}

/// [`PacketScratch::log_pending`]: what this run saw for the first time on its CPU.
const LOG_VERSION: u32 = 1;
const LOG_CONFIG: u32 = 2;
const LOG_SWAP_FAILURE: u32 = 4;

/// Logs what `PacketScratch::log_pending` says (rare: a new model version or configuration,
/// retries run out under pushes). A global function called last: the verifier checks the log
/// code once, on its own, rather than once per path that reaches the end of the program.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn npk_log_events() -> u32 {
    let (Some(packet), Some(config)) = (PACKET.get_ptr_mut(0), CONFIG.get(0)) else {
        return 0;
    };
    // SAFETY: per-CPU map value, used by one program run at a time on this CPU.
    let packet = unsafe { &mut *packet };
    let pending = packet.log_pending;
    packet.log_pending = 0;
    if pending & LOG_VERSION != 0 {
        aya_log_ebpf::info!(
            &(),
            target: crate::LOG_TARGET,
            "model version {} first seen on this CPU",
            packet.version_seen
        );
    }
    if pending & LOG_CONFIG != 0 {
        aya_log_ebpf::info!(
            &(),
            target: crate::LOG_TARGET,
            "config change seen on this CPU: reinfer every {} packets, flags {:x}, class actions {:x}",
            config.reinfer_every,
            config.flags,
            &config.class_action[..]
        );
    }
    if pending & LOG_SWAP_FAILURE != 0 {
        aya_log_ebpf::warn!(
            &(),
            target: crate::LOG_TARGET,
            "swap conflict: pushes rewrote the model slot under every attempt, the frame got the fail action"
        );
    }
    0
}

#[inline(always)]
fn classify_ip<L: InferStage>(
    frame: Option<HeaderBuf>,
    wire_len: u64,
    config: &Config,
    stats: &mut Counters,
) -> Result<Verdict, Outcome> {
    let frame = frame.ok_or(Outcome::Truncated)?;
    let packet = PACKET.get_ptr_mut(0).ok_or(Outcome::NoModel)?;
    // SAFETY: per-CPU map value, used by one program run at a time on this CPU.
    let packet = unsafe { &mut *packet };
    match npk_parse_stage(frame.len() as u64) {
        0 => {}
        code => {
            return Err(match code {
                1 => Outcome::NotIp,
                2 => Outcome::Truncated,
                _ => Outcome::Malformed,
            });
        }
    }
    let now = unsafe { bpf_ktime_get_ns() };
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(Outcome::NoModel)?;
    // SAFETY: per-CPU scratch, used by one program run at a time on this CPU.
    let scratch = unsafe { &mut *scratch };

    let cached = match L::flow_stage(now) {
        FLOW_CACHED => true,
        FLOW_INFERRED => false,
        FLOW_RACED => {
            packet.log_pending |= LOG_SWAP_FAILURE;
            return Err(Outcome::SwapFailure);
        }
        _ => return Err(Outcome::NoModel),
    };
    let (class, version) = (packet.class, packet.version);
    // On inferences only: cache hits stay as they were, and every new model and flow infers.
    // What changed is logged at the end of the program (see npk_log_events).
    if !cached {
        if version != packet.version_seen {
            packet.version_seen = version;
            packet.log_pending |= LOG_VERSION;
        }
        let words = config_words(config);
        if differ(&words, &packet.config_seen) {
            packet.config_seen = words;
            packet.log_pending |= LOG_CONFIG;
        }
    }
    let headers = &packet.headers;

    let c = class as usize & (MAX_CLASSES - 1);
    stats.class_packets[c] += 1;
    stats.class_bytes[c] += wire_len;
    let action = config.class_action[c];
    // A drop needs the model's confidence; below its drop margin the packet passes, counted.
    let drop = action == Action::Drop as u8;
    let unsure = drop && packet.confident == 0;
    let dropped = drop && !unsure;
    stats.unsure += unsure as u64;
    if (action == Action::Sample as u8
        || config.flags & FLAG_SAMPLE_ALL != 0
        || (unsure && config.flags & FLAG_SAMPLE_UNSURE != 0)
        || (dropped && config.flags & FLAG_SAMPLE_DROPS != 0))
        && within_sample_rate(
            now,
            config.samples_per_cpu_s,
            &mut packet.sample_window,
            stats,
        )
    {
        let verdict = SampledVerdict {
            class,
            version,
            cached,
            margin: packet.margin,
            unsure,
            dropped,
        };
        sample(now, &headers.key, verdict, &scratch.features, stats);
    }
    if config.flags & FLAG_RECORD_LAST != 0 {
        record(now, packet, cached, scratch);
    }
    Ok(if dropped {
        Verdict::Drop
    } else {
        Verdict::Pass
    })
}

/// What a sample says of the packet's verdict.
struct SampledVerdict {
    class: u32,
    version: u32,
    cached: bool,
    margin: u32,
    unsure: bool,
    dropped: bool,
}

/// Whether this CPU may take one more sample in the current second (`limit` 0: always); counts
/// the refused ones. A window per CPU in per-CPU memory: no atomics, and a flood spread over
/// CPUs by RSS gets `limit` samples per second from each.
#[inline(always)]
fn within_sample_rate(
    now: u64,
    limit: u32,
    window: &mut SampleWindow,
    stats: &mut Counters,
) -> bool {
    if limit == 0 {
        return true;
    }
    if now.wrapping_sub(window.start_ns) >= 1_000_000_000 {
        window.start_ns = now;
        window.taken = 0;
    }
    if window.taken >= limit {
        stats.samples_limited += 1;
        return false;
    }
    window.taken += 1;
    true
}

#[inline(always)]
fn config_words(config: &Config) -> ConfigWords {
    const { assert!(size_of::<Config>() >= size_of::<ConfigWords>()) };
    // SAFETY: Config is repr(C), 4-aligned and at least that long, all of it plain integers.
    unsafe { core::ptr::read((config as *const Config).cast::<ConfigWords>()) }
}

/// `a != b` without the `bcmp` call that array equality may lower to (BPF has none).
#[inline(always)]
fn differ(a: &ConfigWords, b: &ConfigWords) -> bool {
    a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) != 0
}

/// Parses the frame's copy of `len` bytes into `PacketScratch::headers`: 0, or 1 (not IP), 2
/// (truncated), 3 (malformed). A global function whose result goes to map memory: the
/// verifier checks the parser once, on its own, and the caller goes on with one state.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn npk_parse_stage(len: u64) -> u32 {
    let (Some(frame), Some(packet)) = (HeaderBuf::copied(len as usize), PACKET.get_ptr_mut(0))
    else {
        return 2;
    };
    match parse(&frame) {
        Ok(h) => {
            // SAFETY: per-CPU map value, used by one program run at a time on this CPU.
            unsafe { (*packet).headers = h };
            0
        }
        Err(ParseError::NotIp) => 1,
        Err(ParseError::Truncated) => 2,
        Err(ParseError::Malformed) => 3,
    }
}

/// [`InferStage::flow_stage`] results: the flow's cached verdict still holds, or the model
/// ran (either way class and model version are in `PacketScratch::class` and `version`), or
/// pushes raced every attempt, or there is no model (or no per-CPU memory) to classify with.
pub const FLOW_CACHED: u32 = 0;
pub const FLOW_INFERRED: u32 = 1;
pub const FLOW_RACED: u32 = 2;
pub const FLOW_NO_MODEL: u32 = 3;

/// The body of every [`InferStage::flow_stage`], a global function per loop driver: the flow's
/// lookup (created when new), [`observe_stage`] (host, service, features into
/// `Scratch::features`), then the flow's cached verdict or the model's, stored in the flow.
/// Counts cache hits, inferences and swap retries. The verifier checks it once, on its own,
/// and the caller goes on from one state whatever path the packet took in here (as a static
/// subprogram, its paths multiplied everything after it: past the 5.10 verifier's limit of a
/// million instructions). The inference is in here too because a global function cannot hand
/// the flow's pointer back (a second lookup to store the verdict cost 5% at 16,16).
///
/// The host and service tables are shared LRU maps updated with plain read-modify-writes, like
/// the flow table: two CPUs updating one host at once can lose one of the updates (a count
/// short, a bitmap bit missed until the next packet sets it). Aligned 64-bit stores do not
/// tear, so a feature is never garbage, only a little low, and only while a host or service
/// sends on several CPUs at once: an attack's rates are then far above benign ones anyway.
/// Atomics would cost a locked add per counter per packet, on the hottest entries.
#[inline(always)]
pub fn flow_stage<L: InferStage>(now: u64) -> u32 {
    let (Some(packet), Some(scratch), Some(stats)) = (
        PACKET.get_ptr_mut(0),
        SCRATCH.get_ptr_mut(0),
        STATS.get_ptr_mut(0),
    ) else {
        return FLOW_NO_MODEL;
    };
    // SAFETY: per-CPU map values, used by one program run at a time on this CPU.
    let (packet, scratch, stats) = unsafe { (&mut *packet, &mut *scratch, &mut *stats) };
    let flow = entry(&FLOWS, &packet.headers.key, &mut packet.spare_flow);
    // SAFETY: a map value (or this CPU's spare); races as described above.
    let flow = unsafe { &mut *flow };
    observe_stage(packet, flow, now, &mut scratch.features);
    npk_reply_stage(now);

    let Some((_, model)) = active_model() else {
        return FLOW_NO_MODEL;
    };
    let config = CONFIG.get(0).unwrap_or(&Config::DEFAULT);
    let every = if config.reinfer_every == 0 {
        1
    } else {
        config.reinfer_every
    };
    if flow.since_infer > 0
        && flow.since_infer < every
        && flow.model_version == model.header.model_version
    {
        stats.cache_hits += 1;
        flow.since_infer += 1;
        packet.class = flow.class;
        packet.margin = flow.margin;
        packet.confident = flow.confident;
        packet.version = flow.model_version;
        return FLOW_CACHED;
    }
    stats.inferences += 1;
    let mut result = RACED;
    for _ in 0..READ_ATTEMPTS {
        result = L::infer();
        if result != RACED {
            break;
        }
        stats.swap_retries += 1;
    }
    match result {
        INFERRED => {
            (packet.margin, packet.confident) = confidence(packet.class, packet.version, scratch);
            flow.class = packet.class;
            flow.margin = packet.margin;
            flow.confident = packet.confident;
            flow.model_version = packet.version;
            flow.since_infer = 1;
            FLOW_INFERRED
        }
        RACED => FLOW_RACED,
        _ => FLOW_NO_MODEL,
    }
}

/// The margin of the inference that just left its logits in `scratch` (class `class`, model
/// version `version`), and 1 when it reaches the model's drop margin. Computed here, after the
/// inference stage, from the model of that version: inside that stage the extra values made
/// 5.10 refuse the 128-wide bounded program at its million instructions. Should two pushes
/// have replaced that model since the inference, margin 0 and not confident: the packet
/// passes, counted as unsure.
#[inline(always)]
fn confidence(class: u32, version: u32, scratch: &npk_common::infer::Scratch) -> (u32, u32) {
    match model_of_version(version) {
        Some(model) => {
            let m = margin(model, scratch, class);
            (m, (m >= model.header.drop_margin) as u32)
        }
        None => (0, 0),
    }
}

/// Host and service lookups (created when new), the flow's, host's and service's update and the
/// features. A subprogram of its own, not inlined into the flow stage: its stack frame then is
/// not on top of the flow stage's when that calls the inference (the verifier's limit: 512
/// bytes for a chain of calls, which 5.10 enforced with npk_bounded_32's wide loop step).
#[inline(never)]
fn observe_stage(
    packet: &mut PacketScratch,
    flow: &mut FlowState,
    now: u64,
    features: &mut [i32; MAX_INPUTS],
) {
    let h = &packet.headers;
    let host = entry(&HOSTS, &h.key.src, &mut packet.spare_host);
    packet.service_key = h.key.service();
    let service = entry(&SERVICES, &packet.service_key, &mut packet.spare_service);
    // SAFETY: map values (or this CPU's spares); races as described in flow_stage.
    let (host, service) = unsafe { (&mut *host, &mut *service) };
    if let Some(out) = features.first_chunk_mut::<NUM_FEATURES>() {
        packet.reply_counts = observe(
            h,
            PacketState {
                flow,
                host,
                service,
            },
            now,
            out,
        );
    }
}

/// The reply features (npk_common::packet::reply_features) from `PacketScratch::reply_counts`
/// into `Scratch::features`. A global function whose result goes to map memory: the verifier
/// checks its branches once, on their own (inline, the two balances took 5.10's and 6.1's
/// classifiers past a million instructions). Called from the flow stage's own frame: called
/// from inside observe_stage (a static subprogram), 6.1 still went past the limit.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn npk_reply_stage(now: u64) -> u32 {
    let (Some(packet), Some(scratch)) = (PACKET.get_ptr(0), SCRATCH.get_ptr_mut(0)) else {
        return 1;
    };
    // SAFETY: per-CPU map values, used by one program run at a time on this CPU.
    let (packet, scratch) = unsafe { (&*packet, &mut *scratch) };
    if let Some(out) =
        scratch.features[..NUM_FEATURES].last_chunk_mut::<{ NUM_FEATURES - INGRESS_FEATURES }>()
    {
        *out = reply_features(&packet.reply_counts, now);
    }
    0
}

/// The entry of `key` in `map`, inserted (zeroed) when missing: a full LRU evicts for us; if
/// even the insert fails, `spare` (this CPU's, zeroed) stands in, a flow (host, service) of
/// this packet alone.
#[inline(always)]
fn entry<K, V: Default>(map: &LruHashMap<K, V>, key: &K, spare: &mut V) -> *mut V {
    if let Some(value) = map.get_ptr_mut(key) {
        return value;
    }
    *spare = V::default();
    let _ = map.insert(key, &*spare, 0);
    map.get_ptr_mut(key).unwrap_or(spare as *mut V)
}

#[inline(always)]
fn sample(
    now: u64,
    key: &npk_common::packet::FlowKey,
    verdict: SampledVerdict,
    features: &[i32; MAX_INPUTS],
    stats: &mut Counters,
) {
    let Some(mut entry) = SAMPLES.reserve::<Sample>(0) else {
        stats.samples_lost += 1;
        return;
    };
    let s = entry.as_mut_ptr();
    // SAFETY: the reserved entry is ours until submit.
    unsafe {
        (*s).timestamp_ns = now;
        (*s).flow = *key;
        (*s).class = verdict.class;
        (*s).model_version = verdict.version;
        (*s).cached = verdict.cached as u32;
        (*s).margin = verdict.margin;
        (*s).unsure = verdict.unsure as u32;
        (*s).dropped = verdict.dropped as u32;
        if let Some(f) = features.first_chunk::<NUM_FEATURES>() {
            (*s).features = *f;
        }
    }
    entry.submit(0);
}

#[inline(always)]
fn record(now: u64, packet: &PacketScratch, cached: bool, scratch: &npk_common::infer::Scratch) {
    let Some(last) = LAST.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: map value; only `npk verify` reads it, between test runs.
    let last = unsafe { &mut *last };
    last.now_ns = now;
    last.seq += 1;
    last.outcome = Outcome::Classified as u32;
    last.class = packet.class;
    last.model_version = packet.version;
    last.cached = cached as u32;
    last.margin = packet.margin;
    last.confident = packet.confident;
    if let Some(f) = scratch.features.first_chunk::<NUM_FEATURES>() {
        last.features = *f;
    }
    // The logits are in the buffer the last layer wrote (see Scratch::logits).
    if let Some((_, model)) = active_model() {
        let buf = &scratch.act[model.header.num_layers as usize & 1];
        if let Some(l) = buf.first_chunk::<MAX_CLASSES>() {
            last.logits = *l;
        }
    }
}
