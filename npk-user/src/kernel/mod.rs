//! npk's eBPF programs in the kernel: loading, model pushes (hot swap), configuration,
//! counters, attachment.

pub mod attach;
pub mod config;
pub mod load;
pub mod log;
pub mod probe;

use std::{os::fd::OwnedFd, path::Path, path::PathBuf, time::Duration};

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, MapError, PerCpuArray},
    pin::PinError,
    programs::{ProgramError, ProgramInfo, SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use npk_common::{
    infer::{BOUNDED_WIDTHS, required_width},
    maps::{
        Config, Counters, InferenceRecord, MAP_ACTIVE, MAP_CONFIG, MAP_LAST, MAP_MODELS,
        MAP_SLOT_SEQ, MAP_STATS, NO_MODEL, PROG_BARE, PROG_BOUNDED, PROG_CLASSIFY,
        PROG_CLASSIFY_TC, PROG_EGRESS,
    },
    model::{FeatureSchema, Model, ModelError},
};

pub use load::{LoadError, PrivilegeError, load_object, load_program, require_xdp_load_bytes};
use probe::kernel;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{LOOPS_ENV}={0}: expected bounded or helper")]
    LoopsEnv(String),
    #[error("program {0} missing")]
    MissingProgram(String),
    #[error("map {0} missing")]
    MissingMap(String),
    #[error("opening pinned map {}", .path.display())]
    OpenPin {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("pinning {name}")]
    Pin {
        name: String,
        #[source]
        source: PinError,
    },
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error("model not active")]
    NotActive,
    #[error("the model is not valid")]
    InvalidModel(#[source] ModelError),
    #[error(
        "model uses packet feature schema v{0}, this npk computes v6 (and v5, its first 26 \
         features): retrain with npk \
         features/npk train (v3 dropped TTL and TCP window, put ports and flow counters on the \
         log scale and added the host's pacing; v4 left UDP sizes out; v5 leaves ports and \
         ICMP sizes out and adds a TCP flow's ACK share and half-open state; v6 adds the replies \
         this machine sends)"
    )]
    OldSchema(u8),
    #[error(
        "the model's features are not {0:?} (was it trained on tabular CSV data? the classifier \
         needs a model trained on `npk features`/`npk capture` output)"
    )]
    Schema(FeatureSchema),
    #[error("a model of {schema} reads {inputs} features, this one {model}")]
    PacketInputs {
        schema: &'static str,
        inputs: usize,
        model: u32,
    },
    #[error(
        "the model computes from {new} but the one active computes from {active}: push a model \
         trained on the same features"
    )]
    SwapFeatures { new: String, active: String },
    #[error(
        "the model has {new} classes, the attachment has actions for {covered} (classes \
         0..={}): class{} {} would have no action. Attach again with --action for them, or \
         push with --allow-unmapped-classes to let them pass",
        covered - 1,
        if new - covered == 1 { "" } else { "es" },
        (*covered..*new).map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
    )]
    UnmappedClasses { new: u32, covered: u32 },
    #[error(
        "the model is {width} wide (inputs or neurons); this kernel ({release}) has no bpf_loop \
         helper (Linux 5.17+), and the bounded-loop classifier loaded instead takes models up \
         to {limit} wide (npk's widest: {widest})",
        widest = BOUNDED_WIDTHS[BOUNDED_WIDTHS.len() - 1]
    )]
    TooWide {
        width: usize,
        limit: usize,
        release: String,
    },
}

type Result<T, E = KernelError> = std::result::Result<T, E>;

/// How the classifier's loops run in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loops {
    /// Through the `bpf_loop` helper (Linux 5.17+): the verifier checks each body once, so
    /// any model up to MAX_WIDTH loads.
    Helper,
    /// Bounded loops the verifier walks step by step (any kernel npk supports), every layer
    /// computed this wide (one of [`BOUNDED_WIDTHS`]): models up to that wide.
    Bounded(usize),
}

/// Set to `bounded` or `helper` to choose the classifier's loops instead of probing (to
/// compare them: `NPK_LOOPS=bounded npk bench infer`).
const LOOPS_ENV: &str = "NPK_LOOPS";

impl Loops {
    /// This kernel's for a model `width` wide: the helper where it exists (unless NPK_LOOPS
    /// says otherwise), else the narrowest bounded classifier that fits (the widest if none
    /// does: pushing the model then says why it does not fit).
    pub fn for_kernel(width: usize) -> Result<Self> {
        let bounded = Self::Bounded(
            BOUNDED_WIDTHS
                .into_iter()
                .find(|&w| w >= width)
                .unwrap_or(BOUNDED_WIDTHS[BOUNDED_WIDTHS.len() - 1]),
        );
        match std::env::var(LOOPS_ENV).as_deref() {
            Ok("bounded") => return Ok(bounded),
            Ok("helper") => return Ok(Self::Helper),
            Ok(other) => return Err(KernelError::LoopsEnv(other.into())),
            Err(_) => {}
        }
        Ok(if kernel().bpf_loop {
            Self::Helper
        } else {
            bounded
        })
    }

    /// The widest model these loops run.
    pub fn max_width(self) -> usize {
        match self {
            Self::Helper => npk_common::model::MAX_WIDTH,
            Self::Bounded(width) => width,
        }
    }

    /// Refuses a model wider than these loops run, naming the kernel and the limit (the
    /// bounded programs would answer "no model" for every packet).
    pub fn check_fits(self, model: &Model) -> Result<()> {
        let width = required_width(model);
        let limit = self.max_width();
        if width > limit {
            return Err(KernelError::TooWide {
                width,
                limit,
                release: kernel().release.clone(),
            });
        }
        Ok(())
    }
}

/// Which classifier program to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgramKind {
    Xdp,
    Tc,
    /// The parse-only baseline (XDP).
    Bare,
}

impl ProgramKind {
    /// The feature schema a model must have to run in this program.
    pub fn schema(self) -> FeatureSchema {
        npk_common::packet::SCHEMA
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => PROG_CLASSIFY,
            Self::Tc => PROG_CLASSIFY_TC,
            Self::Bare => PROG_BARE,
        }
    }

    /// The classifier whose program is `name`, and how its loops run: the inverse of
    /// [`ProgramKind::program`] over every classifier in the object.
    pub fn classifier_named(name: &str) -> Option<(Self, Loops)> {
        let loops = [Loops::Helper]
            .into_iter()
            .chain(BOUNDED_WIDTHS.map(Loops::Bounded));
        loops
            .flat_map(|l| [(Self::Xdp, l), (Self::Tc, l)])
            .find(|&(kind, l)| kind.program(l) == name)
    }

    /// The program of this kind whose loops run as `loops` (only the classifiers have
    /// bounded-loop twins).
    pub fn program(self, loops: Loops) -> &'static str {
        let Loops::Bounded(width) = loops else {
            return self.name();
        };
        let (_, xdp, tc) = PROG_BOUNDED
            .into_iter()
            .find(|&(w, _, _)| w >= width)
            .unwrap_or(PROG_BOUNDED[PROG_BOUNDED.len() - 1]);
        match self {
            Self::Xdp => xdp,
            Self::Tc => tc,
            Self::Bare => self.name(),
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

/// What a hot swap may change, checked by [`ControlMaps::push`] for the CLI, the inference
/// service and the tests alike. A classifier's new model computes from the same features
/// (schema and input count) as the active one. An attachment's new model also has no class
/// beyond the active one's (its actions were chosen for them) unless `allow_unmapped_classes`:
/// the extra classes then pass; a classifier loaded by a harness (verify, bench, tests) sets its
/// configuration with each model. The inference service takes any model: each request names
/// the model version and carries its own features, and a mismatch gets an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapRule {
    pub same_features: bool,
    pub allow_unmapped_classes: bool,
}

impl SwapRule {
    pub const ATTACHMENT: Self = Self {
        same_features: true,
        allow_unmapped_classes: false,
    };
    pub const LOADED: Self = Self {
        same_features: true,
        allow_unmapped_classes: true,
    };
    pub const SERVICE: Self = Self {
        same_features: false,
        allow_unmapped_classes: true,
    };

    fn check(self, active: &Model, new: &Model) -> Result<()> {
        let (a, n) = (&active.header, &new.header);
        let features = |h: &npk_common::model::ModelHeader| {
            let name = FeatureSchema::from_u32(h.feature_schema).map_or_else(
                || format!("unknown feature schema {}", h.feature_schema),
                |s| s.name().to_string(),
            );
            format!("{name} with {} inputs", h.num_inputs)
        };
        if self.same_features
            && (a.feature_schema, a.num_inputs) != (n.feature_schema, n.num_inputs)
        {
            return Err(KernelError::SwapFeatures {
                new: features(n),
                active: features(a),
            });
        }
        if n.num_classes > a.num_classes && !self.allow_unmapped_classes {
            return Err(KernelError::UnmappedClasses {
                new: n.num_classes,
                covered: a.num_classes,
            });
        }
        Ok(())
    }
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
    /// Takes the maps of a freshly loaded object and sets them up as a new classifier's: no
    /// model, the default configuration.
    pub fn take_fresh(ebpf: &mut Ebpf) -> Result<Self> {
        let mut maps = Self::take(ebpf)?;
        Array::<_, u32>::try_from(&mut maps.active)?.set(0, NO_MODEL, 0)?;
        maps.set_config(&Config::default())?;
        Ok(maps)
    }

    fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| KernelError::MissingMap(name.into()))
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
            let data =
                MapData::from_pin(&path).map_err(|source| KernelError::OpenPin { path, source })?;
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
            map.pin(dir.join(name)).map_err(|source| KernelError::Pin {
                name: name.into(),
                source,
            })?;
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
    /// The model is checked first (against the active one by `rule`; `schema`: what the
    /// program computes, `None`: anything): a model the kernel cannot use changes nothing. Then the inactive slot is written under its
    /// sequence counter (odd while writing) and the active index flipped, so each packet sees
    /// exactly one whole model (see npk_common::maps).
    pub fn push(
        &mut self,
        model: &Model,
        schema: Option<FeatureSchema>,
        rule: SwapRule,
    ) -> Result<u32> {
        model.validate().map_err(KernelError::InvalidModel)?;
        // An older packet schema first (the fix is to retrain), then what the swap would change
        // against the active model, then what the program computes.
        if schema.is_some() {
            for (old, version) in [
                (FeatureSchema::PacketV1, 1),
                (FeatureSchema::PacketV2, 2),
                (FeatureSchema::PacketV3, 3),
                (FeatureSchema::PacketV4, 4),
            ] {
                if model.header.feature_schema == old as u32 {
                    return Err(KernelError::OldSchema(version));
                }
            }
        }
        let previous = self.active_model()?;
        if let Some(active) = &previous {
            rule.check(active, model)?;
        }
        if let Some(schema) = schema {
            let model_schema = FeatureSchema::from_u32(model.header.feature_schema);
            if !model_schema.is_some_and(|m| m.computed_by(schema)) {
                return Err(KernelError::Schema(schema));
            }
            if let Some(inputs) = model_schema.and_then(FeatureSchema::packet_inputs)
                && model.header.num_inputs as usize != inputs
            {
                return Err(KernelError::PacketInputs {
                    schema: model_schema.map_or("?", FeatureSchema::name),
                    inputs,
                    model: model.header.num_inputs,
                });
            }
        }
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
        Ok(Counters::sum(per_cpu.get(&0, 0)?.iter()))
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
    /// How the loaded program's loops run (the serving and baseline programs: `Helper`).
    pub loops: Loops,
    pub maps: ControlMaps,
}

impl Classifier {
    /// Loads the object and verifies the program of `kind` for this kernel (see
    /// [`Loops::for_kernel`]; where the loops are bounded, the narrowest). Nothing is attached.
    pub fn load(kind: ProgramKind) -> Result<Self> {
        Self::load_for_width(kind, 0)
    }

    /// [`Classifier::load`] with the program that runs `model` on this kernel.
    pub fn load_for(kind: ProgramKind, model: &Model) -> Result<Self> {
        Self::load_for_width(kind, required_width(model))
    }

    fn load_for_width(kind: ProgramKind, width: usize) -> Result<Self> {
        let loops = match kind {
            ProgramKind::Xdp | ProgramKind::Tc => Loops::for_kernel(width)?,
            ProgramKind::Bare => {
                require_xdp_load_bytes("the parse-only baseline", PROG_BARE)?;
                Loops::Helper
            }
        };
        let mut ebpf = load_object()?;
        if kind != ProgramKind::Bare {
            // Beside every classifier: it attaches at TC egress where the kernel has TCX, and
            // `npk verify` runs it through TEST_RUN on every kernel.
            load_program(&mut ebpf, PROG_EGRESS, || {
                format!("the kernel refused {PROG_EGRESS}, the classifier's reply counter")
            })?;
        }
        let name = kind.program(loops);
        load_program(&mut ebpf, name, || match loops {
            Loops::Helper => format!("the kernel refused {name}"),
            Loops::Bounded(w) => format!(
                "the kernel ({}) refused {name}, the classifier for kernels without bpf_loop \
                 (Linux < 5.17) for models up to {w} wide",
                kernel().release
            ),
        })?;
        let maps = ControlMaps::take_fresh(&mut ebpf)?;
        Ok(Self {
            ebpf,
            kind,
            loops,
            maps,
        })
    }

    /// Pushes `model` (see [`ControlMaps::push`]); refuses one wider than the loaded
    /// program's loops run.
    pub fn push(&mut self, model: &Model) -> Result<u32> {
        self.loops.check_fits(model)?;
        self.maps
            .push(model, Some(self.kind.schema()), SwapRule::LOADED)
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
        self.run_program(
            self.kind.program(self.loops),
            self.kind == ProgramKind::Tc,
            frame,
            repeat,
        )
    }

    /// Runs the egress program (the reply counter) on `frame` through BPF_PROG_TEST_RUN once.
    pub fn test_run_egress(&self, frame: &[u8]) -> Result<u32> {
        Ok(self.run_program(PROG_EGRESS, true, frame, 1)?.0)
    }

    /// BPF_PROG_TEST_RUN of program `name` (a TC classifier when `tc`, else XDP): its return
    /// value and the kernel's time per run.
    fn run_program(
        &self,
        name: &str,
        tc: bool,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration)> {
        let prog = self
            .ebpf
            .program(name)
            .ok_or_else(|| KernelError::MissingProgram(name.into()))?;
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::new()
        };
        let result = if tc {
            <&SchedClassifier>::try_from(prog)?.test_run(opts)?
        } else {
            <&Xdp>::try_from(prog)?.test_run(opts)?
        };
        Ok((result.return_value, result.duration))
    }

    /// The name of the program this classifier runs (its kind, in its loop form).
    pub fn program_name(&self) -> &'static str {
        self.kind.program(self.loops)
    }

    pub fn program_info(&self) -> Result<ProgramInfo> {
        let prog = self
            .ebpf
            .program(self.program_name())
            .ok_or_else(|| KernelError::MissingProgram(self.program_name().into()))?;
        Ok(match self.kind {
            ProgramKind::Tc => <&SchedClassifier>::try_from(prog)?.info()?,
            _ => <&Xdp>::try_from(prog)?.info()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{random_packet_model, random_tabular_model};

    /// The one hot-swap rule: a classifier keeps its features and its classes (unless told to
    /// let extra ones pass); the inference service takes any model.
    #[test]
    fn a_swap_keeps_the_features_and_the_classes_the_actions_cover() {
        let packets3 = random_packet_model(&[8], 3, 1).unwrap();
        let packets4 = random_packet_model(&[8], 4, 2).unwrap();
        let tabular = random_tabular_model(4, &[8], 3, 3).unwrap();
        let rule = SwapRule::ATTACHMENT;
        assert!(
            rule.check(&packets3, &random_packet_model(&[16], 2, 4).unwrap())
                .is_ok()
        );
        let e = rule.check(&packets3, &tabular).unwrap_err().to_string();
        assert!(e.contains("tabular (CSV columns) with 4 inputs"), "{e}");
        let e = rule.check(&packets3, &packets4).unwrap_err().to_string();
        assert!(e.contains("class 3 would have no action"), "{e}");
        let lenient = SwapRule {
            allow_unmapped_classes: true,
            ..rule
        };
        assert!(lenient.check(&packets3, &packets4).is_ok());
        assert!(SwapRule::LOADED.check(&packets3, &packets4).is_ok());
        assert!(SwapRule::LOADED.check(&packets3, &tabular).is_err());
        assert!(SwapRule::SERVICE.check(&packets3, &tabular).is_ok());
    }

    /// What `npk push` reads off a pinned program: every classifier's name, and nothing else.
    #[test]
    fn a_classifier_program_name_says_its_kind_and_loops() {
        let named = ProgramKind::classifier_named;
        assert_eq!(
            named(PROG_CLASSIFY),
            Some((ProgramKind::Xdp, Loops::Helper))
        );
        assert_eq!(
            named(PROG_CLASSIFY_TC),
            Some((ProgramKind::Tc, Loops::Helper))
        );
        for (width, xdp, tc) in PROG_BOUNDED {
            assert_eq!(named(xdp), Some((ProgramKind::Xdp, Loops::Bounded(width))));
            assert_eq!(named(tc), Some((ProgramKind::Tc, Loops::Bounded(width))));
        }
        for other in [PROG_BARE, "npk_serve", "npk_bounded_", ""] {
            assert_eq!(named(other), None, "{other:?}");
        }
    }
}
