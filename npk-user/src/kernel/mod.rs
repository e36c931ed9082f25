//! npk's eBPF programs in the kernel: loading, model pushes (hot swap), configuration,
//! counters, attachment.

pub mod attach;
pub mod verify;

use std::{os::fd::OwnedFd, path::Path, time::Duration};

use anyhow::{Context, Result, ensure};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuArray},
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
            Self::Xdp | Self::Tc | Self::Bare => Some(npk_common::packet::SCHEMA),
            Self::Serve => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => PROG_CLASSIFY,
            Self::Tc => PROG_CLASSIFY_TC,
            Self::Bare => PROG_BARE,
            Self::Serve => npk_common::wire::PROG_SERVE,
        }
    }
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// The setting `npk attach --pin` found before it turned the accounting on, kept until the
/// last pinned attachment is detached (the pins outlive the process that made them).
const BPF_STATS_BEFORE_PINS: &str = "/run/npk/bpf_stats_enabled.before";

/// Keeps the kernel's per-program run-time accounting (run_time_ns/run_cnt, two clock reads per
/// run) on while the handle lives: BPF_ENABLE_STATS, counted by the kernel, so holders side by
/// side do not undo each other, and released even if the process is killed. `None` where the
/// kernel refuses it.
pub fn run_time_stats() -> Option<OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()
}

/// The kernel's per-program run-time accounting as a global switch
/// (kernel.bpf_stats_enabled): off while a guard from [`BpfStats::off`] lives, and the
/// setting pinned attachments keep on.
pub struct BpfStats(Option<String>);

impl BpfStats {
    /// Turns the switch off until the guard goes, then restores what it was.
    pub fn off() -> Self {
        let previous = std::fs::read_to_string(BPF_STATS).ok();
        let _ = std::fs::write(BPF_STATS, "0");
        Self(previous)
    }

    /// Turns the accounting on for a pinned attachment; the first of them saves the setting
    /// it found for [`BpfStats::restore_after_pins`].
    pub fn on_for_pins() {
        let before = Path::new(BPF_STATS_BEFORE_PINS);
        if !before.exists()
            && let Ok(previous) = std::fs::read_to_string(BPF_STATS)
            && before
                .parent()
                .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
        {
            let _ = std::fs::write(before, previous.trim());
        }
        let _ = std::fs::write(BPF_STATS, "1");
    }

    /// Puts back the setting the first pinned attachment found (call once none is left).
    pub fn restore_after_pins() {
        if let Ok(previous) = std::fs::read_to_string(BPF_STATS_BEFORE_PINS) {
            let _ = std::fs::write(BPF_STATS, previous.trim());
            let _ = std::fs::remove_file(BPF_STATS_BEFORE_PINS);
        }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(v) = &self.0 {
            let _ = std::fs::write(BPF_STATS, v.trim());
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

/// The maps userspace writes and reads, owned: taken from a freshly loaded object or opened
/// from their pins in bpffs (`npk push`/`npk stats` after `npk attach`).
pub struct ControlMaps {
    models: Map,
    slot_seq: Map,
    active: Map,
    config: Map,
    stats: Map,
    last: Map,
}

impl ControlMaps {
    fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing"))
        };
        Ok(Self {
            models: take(MAP_MODELS)?,
            slot_seq: take(MAP_SLOT_SEQ)?,
            active: take(MAP_ACTIVE)?,
            config: take(MAP_CONFIG)?,
            stats: take(MAP_STATS)?,
            last: take(MAP_LAST)?,
        })
    }

    /// Opens the maps pinned in `dir` by `npk attach`.
    pub fn from_pins(dir: &Path) -> Result<Self> {
        let open = |name: &str| -> Result<Map> {
            let path = dir.join(name);
            let data = MapData::from_pin(&path)
                .with_context(|| format!("opening pinned map {}", path.display()))?;
            Ok(Map::from_map_data(data)?)
        };
        Ok(Self {
            models: open(MAP_MODELS)?,
            slot_seq: open(MAP_SLOT_SEQ)?,
            active: open(MAP_ACTIVE)?,
            config: open(MAP_CONFIG)?,
            stats: open(MAP_STATS)?,
            last: open(MAP_LAST)?,
        })
    }

    /// Pins every control map into `dir` (which must exist, on bpffs).
    pub fn pin(&self, dir: &Path) -> Result<()> {
        for (name, map) in [
            (MAP_MODELS, &self.models),
            (MAP_SLOT_SEQ, &self.slot_seq),
            (MAP_ACTIVE, &self.active),
            (MAP_CONFIG, &self.config),
            (MAP_STATS, &self.stats),
            (MAP_LAST, &self.last),
        ] {
            map.pin(dir.join(name))
                .with_context(|| format!("pinning {name}"))?;
        }
        Ok(())
    }

    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        Array::<_, Config>::try_from(&mut self.config)?.set(0, config, 0)?;
        Ok(())
    }

    pub fn config(&self) -> Result<Config> {
        Ok(Array::<_, Config>::try_from(&self.config)?.get(&0, 0)?)
    }

    fn active_slot(&self) -> Result<u32> {
        Ok(Array::<_, u32>::try_from(&self.active)?.get(&0, 0)?)
    }

    /// The active model, if one was pushed.
    pub fn active_model(&self) -> Result<Option<Box<Model>>> {
        let slot = self.active_slot()?;
        if slot == NO_MODEL {
            return Ok(None);
        }
        let models = Array::<_, Model>::try_from(&self.models)?;
        Ok(Some(Box::new(models.get(&(slot & 1), 0)?)))
    }

    /// Replaces the model atomically; returns the version it was given.
    ///
    /// The model is checked first (`schema`: what the program computes; `None`: anything):
    /// a model the kernel cannot use changes nothing. Then the inactive slot is written under its
    /// sequence counter (odd while writing) and the active index flipped, so each packet sees
    /// exactly one whole model (see npk_common::maps).
    pub fn push(&mut self, model: &Model, schema: Option<FeatureSchema>) -> Result<u32> {
        model.validate().context("the model is not valid")?;
        if let Some(schema) = schema {
            ensure!(
                model.header.feature_schema != FeatureSchema::PacketV1 as u32,
                "model uses packet feature schema v1, this npk computes v2: retrain with npk \
                 features/npk train (v2 adds the sending host's and the service's features)"
            );
            ensure!(
                model.header.feature_schema == schema as u32,
                "the model's features are not {schema:?} (was it trained on tabular CSV data? \
                 the classifier needs a model trained on `npk features`/`npk capture` output)"
            );
        }
        let previous = self.active_model()?;
        let version = previous.as_ref().map_or(0, |m| m.header.model_version) + 1;
        let active = self.active_slot()?;
        let target = if active == NO_MODEL {
            0
        } else {
            (active & 1) ^ 1
        };
        // On the heap and passed by reference: a Model is ~270 KB.
        let mut versioned: Box<Model> = bytemuck::zeroed_box();
        *versioned = *model;
        versioned.header.model_version = version;

        let mut seq = Array::<_, u64>::try_from(&mut self.slot_seq)?;
        let start = seq.get(&target, 0)?;
        let start = start + (start & 1); // even: a previous push may have died mid-write
        seq.set(target, start + 1, 0)?;
        Array::<_, Model>::try_from(&mut self.models)?.set(target, versioned, 0)?;
        seq.set(target, start + 2, 0)?;
        Array::<_, u32>::try_from(&mut self.active)?.set(0, target, 0)?;
        Ok(version)
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let per_cpu = PerCpuArray::<_, Counters>::try_from(&self.stats)?;
        Ok(sum_counters(per_cpu.get(&0, 0)?.iter()))
    }

    /// The last classification record (needs [`npk_common::maps::FLAG_RECORD_LAST`]).
    pub fn last_record(&self) -> Result<InferenceRecord> {
        Ok(Array::<_, InferenceRecord>::try_from(&self.last)?.get(&0, 0)?)
    }
}

/// The classifier's object loaded into the kernel: program verified, maps created.
pub struct Classifier {
    pub ebpf: Ebpf,
    pub kind: ProgramKind,
    pub maps: ControlMaps,
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
        let mut maps = ControlMaps::take(&mut ebpf)?;
        Array::<_, u32>::try_from(&mut maps.active)?.set(0, NO_MODEL, 0)?;
        maps.set_config(&Config {
            reinfer_every: 1,
            flags: 0,
            class_action: [0; MAX_CLASSES],
            _pad: [0; 2],
        })?;
        Ok(Self { ebpf, kind, maps })
    }

    pub fn push(&mut self, model: &Model) -> Result<u32> {
        self.maps.push(model, self.kind.schema())
    }

    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        self.maps.set_config(config)
    }

    pub fn active_model(&self) -> Result<Option<Box<Model>>> {
        self.maps.active_model()
    }

    pub fn counters(&self) -> Result<Counters> {
        self.maps.counters()
    }

    pub fn last_record(&self) -> Result<InferenceRecord> {
        self.maps.last_record()
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
