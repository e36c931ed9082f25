//! `npk bench infer`: nanoseconds per packet of the classifier vs a parse-only program, both
//! timed by the kernel (BPF_PROG_TEST_RUN with repeat), interleaved round by round.

use npk_common::{maps::Config, model::Model, packet::PROTO_TCP};
use serde::Serialize;

use crate::kernel::{BpfStats, Classifier, KernelError, ProgramKind};
use crate::packets::synth::{FrameSpec, v4_mapped};

#[derive(Debug, Serialize)]
pub struct InferBench {
    pub ns_per_packet: f64,
    pub bare_ns_per_packet: f64,
    pub macs: u64,
    pub verified_insns: u32,
    /// (ns_per_packet - bare_ns_per_packet) / macs.
    pub ns_per_mac: f64,
    pub rounds: u32,
    pub repeat: u32,
}

/// A TCP data segment of an established flow: the common case on a wire.
fn bench_frame() -> Vec<u8> {
    FrameSpec {
        key: npk_common::packet::FlowKey {
            src: v4_mapped([10, 0, 0, 1]),
            dst: v4_mapped([10, 0, 0, 2]),
            src_port: 40000,
            dst_port: 443,
            protocol: PROTO_TCP,
            _pad: [0; 3],
        },
        ipv6: false,
        vlan: None,
        options: 0,
        tcp_flags: 0x18,
        ttl: 64,
        payload: 512,
    }
    .build()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `model` in the XDP classifier (inference on every packet) against `npk_bare`.
pub fn run(model: &Model, rounds: u32, repeat: u32) -> Result<InferBench, KernelError> {
    // Stats accounting adds two clock reads to every run of every program.
    let _stats_off = BpfStats::off();
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
    Ok(InferBench {
        ns_per_packet,
        bare_ns_per_packet,
        macs,
        verified_insns: classifier
            .program_info()?
            .verified_instruction_count()
            .unwrap_or(0),
        ns_per_mac: (ns_per_packet - bare_ns_per_packet) / macs as f64,
        rounds,
        repeat,
    })
}
