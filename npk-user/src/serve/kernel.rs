//! The kernel inference server seen from userspace: load `npk_serve`, push the model, set the
//! port, attach, read the counters. Once attached, serving takes no system call at all.

use anyhow::{Context, Result, ensure};
use aya::{
    maps::{Array, MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode},
};
use npk_common::{
    model::Model,
    wire::{MAP_SERVE_CONFIG, MAP_SERVE_STATS, PROG_SERVE, ServeConfig, ServeCounters},
};

use crate::{
    kernel::{Classifier, ProgramKind},
    netlab,
};

/// Room for any reply frame BPF_PROG_TEST_RUN hands back (replies are at most 150 bytes).
const TEST_RUN_OUT: usize = 4096;

pub struct KernelServer {
    classifier: Classifier,
    /// Keeps the kernel's run-time accounting on while the server lives (`None` where the
    /// kernel refuses BPF_ENABLE_STATS, or once turned off).
    run_time_stats: Option<std::os::fd::OwnedFd>,
}

impl KernelServer {
    /// Loads and verifies the program and serves `port` (nothing attached yet). Until a model
    /// is pushed, requests are answered NO_MODEL.
    pub fn load(port: u16) -> Result<Self> {
        ensure!(port != 0, "port 0 cannot be served");
        let classifier = Classifier::load(ProgramKind::Serve)?;
        let mut server = Self {
            classifier,
            run_time_stats: crate::kernel::run_time_stats(),
        };
        server.set_port(port)?;
        Ok(server)
    }

    /// Installs or replaces the model atomically (in-flight requests finish on the old one or
    /// are answered RETRY); returns the new model version (1 for the first push).
    pub fn push(&mut self, model: &Model) -> Result<u32> {
        self.classifier.push(model)
    }

    pub fn set_port(&mut self, port: u16) -> Result<()> {
        let map = self
            .classifier
            .ebpf
            .map_mut(MAP_SERVE_CONFIG)
            .context("map NPK_SERVE_CFG missing")?;
        let mut config: Array<&mut MapData, ServeConfig> = Array::try_from(map)?;
        config.set(
            0,
            ServeConfig {
                port,
                _pad: 0,
                _reserved: 0,
            },
            0,
        )?;
        Ok(())
    }

    fn program(&mut self) -> Result<&mut Xdp> {
        let prog = self
            .classifier
            .ebpf
            .program_mut(PROG_SERVE)
            .context("program npk_serve missing")?;
        Ok(prog.try_into()?)
    }

    /// Attaches to `iface` in this process's network namespace; detached when `self` drops.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<()> {
        self.program()?
            .attach(iface, mode)
            .with_context(|| format!("attaching npk_serve to {iface} in {mode:?} mode"))?;
        Ok(())
    }

    /// Attaches to `iface` inside network namespace `netns`. Native XDP_TX on a veth needs an
    /// XDP program on the peer that receives the replies; npk_serve passes them (they are not
    /// to the served port), so it can be that program.
    pub fn attach_in_netns(&mut self, netns: &str, iface: &str, mode: XdpMode) -> Result<()> {
        let program = self.program()?;
        netlab::in_netns(netns, || program.attach(iface, mode))?
            .with_context(|| format!("attaching npk_serve to {iface} in namespace {netns}"))?;
        Ok(())
    }

    /// Instructions the verifier processed to accept the program (the inference is a global
    /// function, verified on its own and counted apart by some kernels).
    pub fn verified_insns(&self) -> Result<u32> {
        Ok(self
            .classifier
            .program_info()?
            .verified_instruction_count()
            .unwrap_or(0))
    }

    /// Turns the run-time accounting off: it reads the clock twice per request, a cost worth
    /// avoiding when measuring throughput (a VM's clock is slow to read).
    pub fn stop_run_time_stats(&mut self) {
        self.run_time_stats = None;
    }

    /// Mean kernel time per program run so far (every frame the program saw), or `None`
    /// before the first run.
    pub fn ns_per_run(&self) -> Result<Option<f64>> {
        let info = self.classifier.program_info()?;
        Ok((info.run_count() > 0)
            .then(|| info.run_time().as_nanos() as f64 / info.run_count() as f64))
    }

    /// Counters summed over CPUs.
    pub fn counters(&mut self) -> Result<ServeCounters> {
        let map = self
            .classifier
            .ebpf
            .map_mut(MAP_SERVE_STATS)
            .context("map NPK_SERVE_STATS missing")?;
        let per_cpu: PerCpuArray<&mut MapData, ServeCounters> = PerCpuArray::try_from(map)?;
        let mut total: ServeCounters = bytemuck::Zeroable::zeroed();
        for c in per_cpu.get(&0, 0)?.iter() {
            total.add(c);
        }
        Ok(total)
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN); returns the XDP action and the
    /// frame as the program left it.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; TEST_RUN_OUT];
        let program = self.program()?;
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }
}
