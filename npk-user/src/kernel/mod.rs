//! npk's eBPF programs in the kernel: loading, model pushes (hot swap), configuration,
//! counters, attachment.

pub mod verify;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
    programs::{ProgramInfo, SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use npk_common::{
    maps::{
        Config, Counters, InferenceRecord, MAP_ACTIVE, MAP_CONFIG, MAP_LAST, MAP_MODELS,
        MAP_SLOT_SEQ, MAP_STATS, NO_MODEL, PROG_BARE, PROG_CLASSIFY, PROG_CLASSIFY_TC,
    },
    model::{FeatureSchema, MAX_CLASSES, Model},
};

/// The eBPF object built by build.rs (empty when the eBPF toolchain was missing).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/npk"));

/// Which classifier program to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    Xdp,
    Tc,
    /// The parse-only baseline (XDP).
    Bare,
    /// The UDP inference server (XDP, npk_common::wire): features come from requests.
    Serve,
}

impl ProgramKind {
    /// The feature schema a model must have to run in this program (`None`: any).
    pub fn schema(self) -> Option<FeatureSchema> {
        match self {
            Self::Xdp | Self::Tc | Self::Bare => Some(FeatureSchema::PacketV1),
            Self::Serve => None,
        }
    }
}

impl ProgramKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => PROG_CLASSIFY,
            Self::Tc => PROG_CLASSIFY_TC,
            Self::Bare => PROG_BARE,
            Self::Serve => npk_common::wire::PROG_SERVE,
        }
    }
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF memory to it, and explains a
/// missing privilege up front instead of an EPERM deep inside a load.
fn check_privileges() -> Result<()> {
    // SAFETY: plain libc calls with valid arguments.
    unsafe {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited);
        ensure!(
            libc::geteuid() == 0,
            "npk needs root (or CAP_BPF + CAP_NET_ADMIN) to load eBPF programs; try sudo"
        );
    }
    Ok(())
}

/// The classifier's object loaded into the kernel: programs verified, maps created.
pub struct Classifier {
    pub ebpf: Ebpf,
    pub kind: ProgramKind,
}

impl Classifier {
    /// Loads the object and verifies the program of `kind`. Nothing is attached.
    pub fn load(kind: ProgramKind) -> Result<Self> {
        check_privileges()?;
        ensure!(
            !EBPF_OBJECT.is_empty(),
            "this npk was built without the eBPF toolchain; run scripts/setup.sh and rebuild"
        );
        let mut ebpf = Ebpf::load(EBPF_OBJECT).context("loading npk's eBPF object")?;
        let name = kind.name();
        let prog = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?;
        let loaded = match kind {
            ProgramKind::Xdp | ProgramKind::Bare | ProgramKind::Serve => {
                let p: &mut Xdp = prog.try_into()?;
                p.load()
            }
            ProgramKind::Tc => {
                let p: &mut SchedClassifier = prog.try_into()?;
                p.load()
            }
        };
        loaded
            .map_err(verifier_error)
            .with_context(|| format!("the kernel refused {name}"))?;
        let mut classifier = Self { ebpf, kind };
        classifier.array::<u32>(MAP_ACTIVE)?.set(0, NO_MODEL, 0)?;
        classifier.set_config(&Config {
            reinfer_every: 1,
            flags: 0,
            class_action: [0; MAX_CLASSES],
            _pad: [0; 2],
        })?;
        Ok(classifier)
    }

    fn array<T: aya::Pod>(&mut self, name: &str) -> Result<Array<&mut MapData, T>> {
        let map = self
            .ebpf
            .map_mut(name)
            .with_context(|| format!("map {name} missing"))?;
        Ok(Array::try_from(map)?)
    }

    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        self.array::<Config>(MAP_CONFIG)?.set(0, config, 0)?;
        Ok(())
    }

    pub fn config(&mut self) -> Result<Config> {
        Ok(self.array::<Config>(MAP_CONFIG)?.get(&0, 0)?)
    }

    /// The active model, if one was pushed.
    pub fn active_model(&mut self) -> Result<Option<Box<Model>>> {
        let slot = self.array::<u32>(MAP_ACTIVE)?.get(&0, 0)?;
        if slot == NO_MODEL {
            return Ok(None);
        }
        Ok(Some(Box::new(
            self.array::<Model>(MAP_MODELS)?.get(&(slot & 1), 0)?,
        )))
    }

    /// Replaces the model atomically; returns the version it was given.
    ///
    /// The model is checked first: a model the kernel cannot use changes nothing. Then the
    /// inactive slot is written under its sequence counter (odd while writing) and the active
    /// index flipped, so each packet sees exactly one whole model (see npk_common::maps).
    pub fn push(&mut self, model: &Model) -> Result<u32> {
        model.validate().context("the model is not valid")?;
        if let Some(schema) = self.kind.schema() {
            ensure!(
                model.header.feature_schema == schema as u32,
                "the model was trained on tabular CSV features, not packet features: {} \
                 computes packet features (train on `npk features`/`npk capture` output)",
                self.kind.name()
            );
        }
        let previous = self.active_model()?;
        let version = previous.as_ref().map_or(0, |m| m.header.model_version) + 1;
        let active = self.array::<u32>(MAP_ACTIVE)?.get(&0, 0)?;
        let target = if active == NO_MODEL {
            0
        } else {
            (active & 1) ^ 1
        };
        let mut versioned = Box::new(*model);
        versioned.header.model_version = version;

        let mut seq = self.array::<u64>(MAP_SLOT_SEQ)?;
        let start = seq.get(&target, 0)?;
        let start = start + (start & 1); // even: a previous push may have died mid-write
        seq.set(target, start + 1, 0)?;
        self.array::<Model>(MAP_MODELS)?
            .set(target, *versioned, 0)?;
        self.array::<u64>(MAP_SLOT_SEQ)?.set(target, start + 2, 0)?;
        self.array::<u32>(MAP_ACTIVE)?.set(0, target, 0)?;
        Ok(version)
    }

    /// Counters summed over CPUs.
    pub fn counters(&mut self) -> Result<Counters> {
        let map = self
            .ebpf
            .map_mut(MAP_STATS)
            .context("map NPK_STATS missing")?;
        let per_cpu: PerCpuArray<&mut MapData, Counters> = PerCpuArray::try_from(map)?;
        Ok(sum_counters(per_cpu.get(&0, 0)?.iter()))
    }

    /// The last classification record (needs [`npk_common::maps::FLAG_RECORD_LAST`]).
    pub fn last_record(&mut self) -> Result<InferenceRecord> {
        Ok(self.array::<InferenceRecord>(MAP_LAST)?.get(&0, 0)?)
    }

    /// Runs the program on `frame` through BPF_PROG_TEST_RUN `repeat` times; returns the
    /// program's return value and the kernel's mean time per run.
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let name = self.kind.name();
        let prog = self.ebpf.program(name).context("program missing")?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        };
        let result = match self.kind {
            ProgramKind::Tc => <&SchedClassifier>::try_from(prog)?.test_run(opts)?,
            _ => <&Xdp>::try_from(prog)?.test_run(opts)?,
        };
        Ok((result.return_value, result.duration))
    }

    /// Kernel statistics of the loaded program (verified instructions, run time).
    pub fn program_info(&self) -> Result<ProgramInfo> {
        let prog = self
            .ebpf
            .program(self.kind.name())
            .context("program missing")?;
        Ok(match self.kind {
            ProgramKind::Tc => <&SchedClassifier>::try_from(prog)?.info()?,
            _ => <&Xdp>::try_from(prog)?.info()?,
        })
    }
}

pub fn sum_counters<'a>(per_cpu: impl Iterator<Item = &'a Counters>) -> Counters {
    let mut total: Counters = bytemuck::Zeroable::zeroed();
    for c in per_cpu {
        for i in 0..MAX_CLASSES {
            total.class_packets[i] += c.class_packets[i];
            total.class_bytes[i] += c.class_bytes[i];
        }
        total.dropped += c.dropped;
        total.non_ip += c.non_ip;
        total.unparsed += c.unparsed;
        total.truncated += c.truncated;
        total.no_model += c.no_model;
        total.inferences += c.inferences;
        total.swap_retries += c.swap_retries;
        total.swap_failures += c.swap_failures;
        total.samples_lost += c.samples_lost;
    }
    total
}

/// The verifier's log can be megabytes: keep its tail, where the reason is.
fn verifier_error(e: aya::programs::ProgramError) -> anyhow::Error {
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = &e {
        let log = verifier_log.to_string();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        return anyhow::anyhow!("{e}\nverifier log (last lines):\n{tail}");
    }
    e.into()
}
