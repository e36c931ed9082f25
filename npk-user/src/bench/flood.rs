//! `npk bench flood`: a spoofed SYN flood (`hping3 --flood --rand-source`) from this namespace
//! through a veth pair into a lab namespace whose end runs XDP, the parse-only program and the
//! classifier taking turns. Per turn: the frames the program ran on, the rate they arrived at
//! (the sender's, on this machine's cores), and the kernel's own time per frame
//! (BPF_ENABLE_STATS: run_time_ns / run_cnt), which bounds the frames per second one core can
//! take through the program. Every frame of a spoofed flood is a new flow, host and service:
//! the classifier's costliest path, live rather than through BPF_PROG_TEST_RUN.
//!
//! The flood goes into the lab namespace, not out of it: the SYN-ACKs its stack answers to the
//! random sources find no route there and go nowhere.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::programs::{Xdp, XdpMode};
use npk_common::{maps::Config, model::Model};
use serde::Serialize;

use super::median;
use crate::{
    kernel::{Classifier, KernelError, ProgramKind, run_time_stats},
    netlab::{NetLab, NetLabError},
};

#[derive(Debug, thiserror::Error)]
pub enum FloodBenchError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Lab(#[from] NetLabError),
    #[error("attaching {program} to {iface} in the lab namespace: {source}")]
    Attach {
        program: &'static str,
        iface: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("starting the flood (hping3, from scripts/setup.sh): {0}")]
    Sender(std::io::Error),
    #[error(
        "the kernel's run-time accounting could not be turned on (BPF_ENABLE_STATS needs CAP_SYS_ADMIN)"
    )]
    NoRunTimeStats,
    #[error("{program} saw no frame of the flood in {seconds} s")]
    NoTraffic { program: &'static str, seconds: f64 },
}

/// One program's turn under the flood.
#[derive(Debug, Serialize)]
pub struct FloodTurn {
    pub program: &'static str,
    /// `native` (the veth driver's XDP) or `skb` (generic XDP, where native was refused).
    pub mode: &'static str,
    /// Frames the program ran on.
    pub frames: u64,
    pub seconds: f64,
    /// Frames per second that arrived (set by the sender and the machine, not by npk).
    pub arrived_per_second: f64,
    /// The kernel's time in the program per frame.
    pub ns_per_frame: f64,
    /// Frames per second one core spends entirely in the program at that cost: 1e9 /
    /// `ns_per_frame` (the rest of the receive path comes on top).
    pub frames_per_core_second: f64,
}

#[derive(Debug, Serialize)]
pub struct FloodBench {
    pub turns: Vec<FloodTurn>,
    /// Medians over the turns of each program, and their ratio.
    pub bare_ns_per_frame: f64,
    pub classifier_ns_per_frame: f64,
    pub classifier_over_bare: f64,
}

/// `rounds` turns of each program, alternated, `seconds` of flood each; the classifier runs
/// `model` with the default configuration (every class passes: both programs hand every frame
/// to the same stack).
pub fn run(model: &Model, seconds: f64, rounds: u32) -> Result<FloodBench, FloodBenchError> {
    let lab = NetLab::create(1)?;
    let _stats = run_time_stats().ok_or(FloodBenchError::NoRunTimeStats)?;
    let (mut turns, mut bare, mut classified) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = turn(&lab, Classifier::load(ProgramKind::Bare)?, seconds)?;
        bare.push(t.ns_per_frame);
        turns.push(t);
        let mut classifier = Classifier::load_for(ProgramKind::Xdp, model)?;
        classifier.push(model)?;
        classifier.set_config(&Config::default())?;
        let t = turn(&lab, classifier, seconds)?;
        classified.push(t.ns_per_frame);
        turns.push(t);
    }
    let (bare, classifier) = (median(bare), median(classified));
    Ok(FloodBench {
        turns,
        bare_ns_per_frame: bare,
        classifier_ns_per_frame: classifier,
        classifier_over_bare: classifier / bare,
    })
}

/// Attaches `loaded`'s program to the lab namespace's veth end, floods it for `seconds`, and
/// reads the kernel's counters; the program is detached when `loaded` goes.
fn turn(lab: &NetLab, mut loaded: Classifier, seconds: f64) -> Result<FloodTurn, FloodBenchError> {
    let program = loaded.program_name();
    let mode = lab.in_netns(|| attach(&mut loaded, &lab.ns_if))??;
    let before = counters(&loaded)?;
    let mut sender = flood(lab)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = counters(&loaded)?;
    let elapsed = started.elapsed().as_secs_f64();
    stop(&mut sender);
    let (frames, time_ns) = (after.0 - before.0, after.1 - before.1);
    if frames == 0 {
        return Err(FloodBenchError::NoTraffic { program, seconds });
    }
    let ns_per_frame = time_ns as f64 / frames as f64;
    Ok(FloodTurn {
        program,
        mode,
        frames,
        seconds: elapsed,
        arrived_per_second: frames as f64 / elapsed,
        ns_per_frame,
        frames_per_core_second: 1e9 / ns_per_frame,
    })
}

/// Native XDP on the veth end, else generic (skb) XDP; which one ran.
fn attach(loaded: &mut Classifier, iface: &str) -> Result<&'static str, FloodBenchError> {
    let program = loaded.program_name();
    let attach_error = |source| FloodBenchError::Attach {
        program,
        iface: iface.to_string(),
        source,
    };
    let xdp: &mut Xdp = loaded
        .ebpf
        .program_mut(program)
        .ok_or_else(|| KernelError::MissingProgram(program.into()))?
        .try_into()
        .map_err(attach_error)?;
    if xdp.attach(iface, XdpMode::Driver).is_ok() {
        return Ok("native");
    }
    xdp.attach(iface, XdpMode::Skb).map_err(attach_error)?;
    Ok("skb")
}

/// The program's run count and run time so far.
fn counters(loaded: &Classifier) -> Result<(u64, u64), FloodBenchError> {
    let info = loaded.program_info()?;
    Ok((info.run_count(), info.run_time().as_nanos() as u64))
}

/// hping3 flooding the lab's namespace end with SYNs from random sources to port 80.
fn flood(lab: &NetLab) -> Result<Child, FloodBenchError> {
    Command::new("hping3")
        .args(["--flood", "--rand-source", "-S", "-p", "80", "-q"])
        .arg(lab.ns_addrs[0].to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(FloodBenchError::Sender)
}

fn stop(sender: &mut Child) {
    let _ = sender.kill();
    let _ = sender.wait();
}
