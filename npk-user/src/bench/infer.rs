//! `npk bench infer`: nanoseconds per packet of the classifier vs a parse-only program, both
//! timed by the kernel (BPF_PROG_TEST_RUN with repeat), interleaved round by round; then what
//! live traffic adds to that hot number, one cause at a time ([`LiveCosts`]).

use std::time::Duration;

use npk_common::{
    maps::{Config, FLAG_SAMPLE_ALL, FLOW_CAPACITY, HOST_CAPACITY, SERVICE_CAPACITY},
    model::Model,
    packet::{FlowKey, PROTO_TCP},
};
use serde::Serialize;

use super::median;
use crate::kernel::{BpfStats, Classifier, KernelError, ProgramKind, run_time_stats};
use crate::packets::{
    capture::{CaptureError, Sampler},
    synth::{FrameSpec, v4_mapped},
};

#[derive(Debug, thiserror::Error)]
pub enum InferBenchError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("sampling the new-flow runs")]
    Sampler(#[source] CaptureError),
}

#[derive(Debug, Serialize)]
pub struct InferBench {
    /// One frame repeated `repeat` times in one call: one flow, caches hot.
    pub ns_per_packet: f64,
    pub bare_ns_per_packet: f64,
    pub macs: u64,
    pub verified_insns: u32,
    /// (ns_per_packet - bare_ns_per_packet) / macs.
    pub ns_per_mac: f64,
    pub rounds: u32,
    pub repeat: u32,
    pub live: LiveCosts,
}

/// Mean ns per packet with one packet per BPF_PROG_TEST_RUN call (the kernel's time of that
/// one run, its clock reads included), each row adding one thing live traffic does that the
/// hot loop does not. Live traffic does all of them at once.
#[derive(Debug, Serialize)]
pub struct LiveCosts {
    /// Runs timed per row (the cold-cache row: [`COLD_RUNS`]).
    pub runs: u32,
    /// The hot frame, one run per call: the hot number plus the per-call timer.
    pub same_flow: f64,
    /// The same with every cache evicted before each run ([`EVICT_BYTES`] written by
    /// userspace): model weights, maps and program text come from memory, as they do when
    /// other work (the stack, other processes) ran between two packets.
    pub same_flow_cold_cache: f64,
    /// Every packet a new flow of one host to one service (a new source port each, as a
    /// SYN flood from one address sends): one LRU insert, into the flow table.
    pub new_flow: f64,
    /// Every packet a new flow from a new host to a new service (a spoofed flood, a scan):
    /// three LRU inserts.
    pub new_flow_host_service: f64,
    /// The same once the three tables are full: every insert evicts.
    pub new_flow_host_service_full_tables: f64,
    /// The same (full tables) with every packet sampled into the ring buffer, as the demo
    /// and `npk capture` run (userspace drains it between runs).
    pub new_flow_host_service_sampled: f64,
    /// The hot loop with the kernel's run-time accounting on (kernel.bpf_stats_enabled,
    /// what `npk stats` and the demo's ns/pkt read): two clock reads per run.
    pub hot_with_bpf_stats: f64,
}

/// Bytes written between two runs of the cold-cache row: past this machine's L3 (32 MiB).
const EVICT_BYTES: usize = 48 << 20;
/// Runs of the cold-cache row (each pays the eviction in userspace: ~5 ms).
const COLD_RUNS: u32 = 200;

/// A TCP data segment of an established flow: the common case on a wire.
fn bench_frame() -> Vec<u8> {
    frame(
        FlowKey {
            src: v4_mapped([10, 0, 0, 1]),
            dst: v4_mapped([10, 0, 0, 2]),
            src_port: 40000,
            dst_port: 443,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        },
        0x18,
    )
}

fn frame(key: FlowKey, tcp_flags: u8) -> Vec<u8> {
    FrameSpec {
        key,
        ipv6: false,
        vlan: None,
        options: 0,
        tcp_flags,
        ttl: 64,
        payload: 512,
    }
    .build()
}

/// The `n`th frame of a stream in which every frame is a new flow of one host to the hot
/// frame's service: source ports 1..=65535 (`n` below 65,535 keeps the flows distinct).
fn new_flow_frame(n: u32) -> Vec<u8> {
    frame(
        FlowKey {
            src: v4_mapped([10, 0, 0, 3]),
            dst: v4_mapped([10, 0, 0, 2]),
            src_port: (n % 65535 + 1) as u16,
            dst_port: 443,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        },
        0x02,
    )
}

/// The `n`th frame of a stream in which every frame is a new flow, host and service (a SYN
/// from a new address to a new port, as a spoofed flood or a scan sends): addresses from
/// 10.64.0.0 up, ports cycling through 1..=65535; `n` below 2^22 keeps the keys distinct.
fn new_host_frame(n: u32) -> Vec<u8> {
    let host = 0x0a40_0000u32 + n;
    frame(
        FlowKey {
            src: v4_mapped(host.to_be_bytes()),
            dst: v4_mapped([10, 0, 0, 2]),
            src_port: 40000,
            dst_port: (n % 65535 + 1) as u16,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        },
        0x02,
    )
}

/// The mean of the kernel's per-run time over single-run calls.
fn mean_ns(times: &[Duration]) -> f64 {
    times.iter().map(|t| t.as_nanos() as f64).sum::<f64>() / times.len().max(1) as f64
}

/// Times `model` in the XDP classifier (inference on every packet) against `npk_bare`, then
/// the live-traffic rows with `live_runs` single runs each.
pub fn run(
    model: &Model,
    rounds: u32,
    repeat: u32,
    live_runs: u32,
) -> Result<InferBench, InferBenchError> {
    // Stats accounting adds two clock reads to every run of every program.
    let stats_off = BpfStats::off();
    let mut classifier = Classifier::load_for(ProgramKind::Xdp, model)?;
    classifier.push(model)?;
    classifier.set_config(&Config::default())?;
    let bare = Classifier::load(ProgramKind::Bare)?;
    let frame = bench_frame();
    // Warm caches and the flow entry.
    classifier.test_run(&frame, repeat)?;
    bare.test_run(&frame, repeat)?;
    let (mut full, mut base) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        full.push(classifier.test_run(&frame, repeat)?.1.as_nanos() as f64);
        base.push(bare.test_run(&frame, repeat)?.1.as_nanos() as f64);
    }
    let ns_per_packet = median(full);
    let bare_ns_per_packet = median(base);
    let macs = model.macs();
    let verified_insns = classifier
        .program_info()?
        .verified_instruction_count()
        .unwrap_or(0);
    let live = live_costs(
        &mut classifier,
        &frame,
        rounds,
        repeat,
        live_runs,
        stats_off,
    )?;
    Ok(InferBench {
        ns_per_packet,
        bare_ns_per_packet,
        macs,
        verified_insns,
        ns_per_mac: (ns_per_packet - bare_ns_per_packet) / macs as f64,
        rounds,
        repeat,
        live,
    })
}

fn live_costs(
    classifier: &mut Classifier,
    hot: &[u8],
    rounds: u32,
    repeat: u32,
    runs: u32,
    stats_off: BpfStats,
) -> Result<LiveCosts, InferBenchError> {
    let single = |c: &Classifier, f: &[u8]| c.test_run(f, 1).map(|(_, t)| t);
    let same_flow = (0..runs)
        .map(|_| single(classifier, hot))
        .collect::<Result<Vec<_>, _>>()?;
    let mut evict = vec![0u8; EVICT_BYTES];
    let mut cold = Vec::new();
    for i in 0..COLD_RUNS {
        // Every cache line written: whatever the kernel left in the caches is gone.
        evict.iter_mut().step_by(64).for_each(|b| *b = i as u8);
        std::hint::black_box(&evict);
        cold.push(single(classifier, hot)?);
    }
    drop(evict);

    let new_flow = (0..runs)
        .map(|i| single(classifier, &new_flow_frame(i)))
        .collect::<Result<Vec<_>, _>>()?;
    // New hosts: the first `runs` into host and service tables holding one entry, then
    // enough to fill all three tables, then `runs` that evict.
    let mut next = 0u32;
    let mut fresh = |c: &Classifier, n: u32| {
        let times = (next..next + n)
            .map(|i| single(c, &new_host_frame(i)))
            .collect::<Result<Vec<_>, _>>();
        next += n;
        times
    };
    let new_hosts = fresh(classifier, runs)?;
    let capacity = FLOW_CAPACITY.max(HOST_CAPACITY).max(SERVICE_CAPACITY);
    fresh(classifier, capacity.saturating_sub(runs))?;
    let full_tables = fresh(classifier, runs)?;

    classifier.set_config(&Config {
        flags: FLAG_SAMPLE_ALL,
        ..Config::default()
    })?;
    let mut sampler = Sampler::take(classifier).map_err(InferBenchError::Sampler)?;
    let mut sampled = Vec::new();
    // The ring buffer (1 MiB) holds ~5,000 samples: drained well before it fills.
    for chunk in 0..runs.div_ceil(1000) {
        let n = 1000.min(runs - chunk * 1000);
        sampled.extend(fresh(classifier, n)?);
        sampler.drain(|_| {});
    }
    classifier.set_config(&Config::default())?;

    drop(stats_off);
    let stats = run_time_stats();
    let mut with_stats = Vec::new();
    for _ in 0..rounds {
        with_stats.push(classifier.test_run(hot, repeat)?.1.as_nanos() as f64);
    }
    drop(stats);
    Ok(LiveCosts {
        runs,
        same_flow: mean_ns(&same_flow),
        same_flow_cold_cache: mean_ns(&cold),
        new_flow: mean_ns(&new_flow),
        new_flow_host_service: mean_ns(&new_hosts),
        new_flow_host_service_full_tables: mean_ns(&full_tables),
        new_flow_host_service_sampled: mean_ns(&sampled),
        hot_with_bpf_stats: median(with_stats),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_flow_frames_are_new_flows_of_one_host_and_service() {
        let key = |n: u32| {
            npk_common::packet::parse(new_flow_frame(n).as_slice())
                .unwrap()
                .key
        };
        // --live-runs takes at most 100,000: flows repeat after 65,535, far beyond the row
        // (the flow table holds 65,536).
        let flows: std::collections::HashSet<_> = (0..65_535).map(key).collect();
        assert_eq!(flows.len(), 65_535);
        let hot = npk_common::packet::parse(bench_frame().as_slice())
            .unwrap()
            .key;
        assert!(!flows.contains(&hot));
        assert!(
            flows
                .iter()
                .all(|k| k.src == key(0).src && k.service() == hot.service())
        );
    }

    #[test]
    fn new_host_frames_are_new_flows_hosts_and_services() {
        let key = |n| {
            npk_common::packet::parse(new_host_frame(n).as_slice())
                .unwrap()
                .key
        };
        // Every frame the bench sends (the tables' capacity plus three rows of 100,000 runs,
        // the most --live-runs takes) comes from a host of its own, so each is a new flow.
        let capacity = FLOW_CAPACITY.max(HOST_CAPACITY).max(SERVICE_CAPACITY);
        let hosts: std::collections::HashSet<_> =
            (0..capacity + 300_000).map(|n| key(n).src).collect();
        assert_eq!(hosts.len(), (capacity + 300_000) as usize);
        // A service recurs only after 65,535 frames, when the table (16,384) has evicted it.
        let services: std::collections::HashSet<_> =
            (0..65_535).map(|n| key(n).service()).collect();
        assert_eq!(services.len(), 65_535);
        assert_eq!(key(65_535).service(), key(0).service());
    }
}
