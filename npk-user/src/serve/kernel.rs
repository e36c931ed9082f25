//! The kernel inference server seen from userspace: load `npk_serve`, push the model, set the
//! port, attach, read the counters. Once attached, serving takes no system call at all.

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode},
};
use npk_common::{
    model::Model,
    service::peer::{IfAddr, MAX_IF_ADDRS},
    service::wire::{MAP_SERVE_CONFIG, MAP_SERVE_STATS, PROG_SERVE, ServeConfig, ServeCounters},
};

use crate::{
    kernel::{
        ControlMaps, KernelError, LoadError, SwapRule, load_object, load_program,
        log::{KernelLog, KernelLogError},
        require_xdp_load_bytes,
    },
    netlab::{self, NetLabError},
};

#[derive(Debug, thiserror::Error)]
pub enum KernelServerError {
    #[error("port 0 cannot be served")]
    Port0,
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("map {0} missing")]
    MissingMap(&'static str),
    #[error("program {PROG_SERVE} missing")]
    MissingProgram,
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("attaching {PROG_SERVE} to {iface} in {} mode", xdp_mode_name(*mode))]
    Attach {
        iface: String,
        mode: XdpMode,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("attaching {PROG_SERVE} to {iface} in namespace {netns}")]
    AttachInNetns {
        netns: String,
        iface: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(transparent)]
    NetLab(#[from] NetLabError),
    #[error("listing the addresses of {iface}")]
    Addresses {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = KernelServerError> = std::result::Result<T, E>;

/// Room for any reply frame BPF_PROG_TEST_RUN hands back (replies are at most 150 bytes).
const TEST_RUN_OUT: usize = 4096;

pub struct KernelServer {
    ebpf: Ebpf,
    /// The model slots (the server reads its model as the classifier does).
    maps: ControlMaps,
    /// Keeps the kernel's run-time accounting on while the server lives (`None` where the
    /// kernel refuses BPF_ENABLE_STATS, or once turned off).
    run_time_stats: Option<std::os::fd::OwnedFd>,
    /// What the config map holds.
    config: ServeConfig,
}

impl KernelServer {
    /// Loads and verifies the program and serves `port` (nothing attached yet). Until a model
    /// is pushed, requests are answered NO_MODEL.
    pub fn load(port: u16) -> Result<Self> {
        if port == 0 {
            return Err(KernelServerError::Port0);
        }
        require_xdp_load_bytes("the in-kernel inference server", PROG_SERVE)?;
        let mut ebpf = load_object()?;
        load_program(&mut ebpf, PROG_SERVE, || {
            format!("the kernel refused {PROG_SERVE}")
        })?;
        let maps = ControlMaps::take_fresh(&mut ebpf)?;
        let mut server = Self {
            ebpf,
            maps,
            run_time_stats: crate::kernel::run_time_stats(),
            config: bytemuck::Zeroable::zeroed(),
        };
        server.set_port(port)?;
        Ok(server)
    }

    /// Installs or replaces the model atomically (in-flight requests finish on the old one or
    /// are answered RETRY); returns the new model version (1 for the first push).
    pub fn push(&mut self, model: &Model) -> Result<u32> {
        // Any features: they come from the requests (see SwapRule::SERVICE).
        Ok(self.maps.push(model, None, SwapRule::SERVICE)?)
    }

    pub fn set_port(&mut self, port: u16) -> Result<()> {
        self.config.port = port;
        self.write_config()
    }

    /// The addresses the server answers at (npk_common::service::peer): requests to any other
    /// destination are passed to the stack. [`attach`](Self::attach) sets the interface's;
    /// after a change of the interface's addresses, set them again. Past [`MAX_IF_ADDRS`]
    /// (IPv4 first), requests go to the stack and the sockets of
    /// [`UserServer::bind_device`](super::user::UserServer::bind_device).
    pub fn set_addresses(&mut self, addrs: &[IfAddr]) -> Result<()> {
        let mut sorted = addrs.to_vec();
        sorted.sort_by_key(|a| a.family);
        self.config.addrs = [IfAddr::NONE; MAX_IF_ADDRS];
        for (slot, a) in self.config.addrs.iter_mut().zip(sorted) {
            *slot = a;
        }
        self.write_config()
    }

    /// The addresses of `iface` in this network namespace (for [`set_addresses`](Self::set_addresses)).
    pub fn interface_addrs(iface: &str) -> Result<Vec<IfAddr>> {
        super::interface_addrs(Some(iface)).map_err(|source| KernelServerError::Addresses {
            iface: iface.into(),
            source,
        })
    }

    fn write_config(&mut self) -> Result<()> {
        let map = self
            .ebpf
            .map_mut(MAP_SERVE_CONFIG)
            .ok_or(KernelServerError::MissingMap(MAP_SERVE_CONFIG))?;
        let mut config: Array<&mut MapData, ServeConfig> = Array::try_from(map)?;
        config.set(0, self.config, 0)?;
        Ok(())
    }

    /// The program's log records (see [`KernelLog`]), for the process that serves to forward.
    pub fn take_log(&mut self) -> Result<KernelLog, KernelLogError> {
        KernelLog::take(&mut self.ebpf)
    }

    fn program(&mut self) -> Result<&mut Xdp> {
        let prog = self
            .ebpf
            .program_mut(PROG_SERVE)
            .ok_or(KernelServerError::MissingProgram)?;
        Ok(prog.try_into()?)
    }

    fn program_info(&self) -> Result<aya::programs::ProgramInfo> {
        let prog = self
            .ebpf
            .program(PROG_SERVE)
            .ok_or(KernelServerError::MissingProgram)?;
        Ok(<&Xdp>::try_from(prog)?.info()?)
    }

    /// Attaches to `iface` in this process's network namespace, serving its addresses of now
    /// ([`set_addresses`](Self::set_addresses)); detached when `self` drops.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<()> {
        self.set_addresses(&Self::interface_addrs(iface)?)?;
        self.program()?
            .attach(iface, mode)
            .map_err(|source| KernelServerError::Attach {
                iface: iface.into(),
                mode,
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Attaches to `iface` inside network namespace `netns`. Native XDP_TX on a veth needs an
    /// XDP program on the peer that receives the replies; npk_serve passes them (they are not
    /// to the served port), so it can be that program. The served addresses stay those of
    /// [`attach`](Self::attach).
    pub fn attach_in_netns(&mut self, netns: &str, iface: &str, mode: XdpMode) -> Result<()> {
        let program = self.program()?;
        netlab::in_netns(netns, || program.attach(iface, mode))?.map_err(|source| {
            KernelServerError::AttachInNetns {
                netns: netns.into(),
                iface: iface.into(),
                source: Box::new(source),
            }
        })?;
        Ok(())
    }

    /// Instructions the verifier processed to accept the program (the inference is a global
    /// function, verified on its own and counted apart by some kernels).
    pub fn verified_insns(&self) -> Result<u32> {
        Ok(self
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
        let info = self.program_info()?;
        Ok((info.run_count() > 0)
            .then(|| info.run_time().as_nanos() as f64 / info.run_count() as f64))
    }

    /// Counters summed over CPUs.
    pub fn counters(&mut self) -> Result<ServeCounters> {
        let map = self
            .ebpf
            .map_mut(MAP_SERVE_STATS)
            .ok_or(KernelServerError::MissingMap(MAP_SERVE_STATS))?;
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

/// The name of `mode` as npk's options spell it (aya's Debug is not for users).
fn xdp_mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Default => "the kernel's default",
        XdpMode::Skb => "skb",
        XdpMode::Driver => "native",
        XdpMode::Hardware => "hardware offload",
    }
}
