//! What `npk attach` attaches, typed once: built from its flags or read from a TOML file
//! (`npk attach --config FILE`, what the systemd unit runs), checked the same way.
//!
//! ```toml
//! interface = "eth0"
//! model = "packets.npk"      # relative paths start at the file's directory
//! mode = "native"            # native | skb | tc (default native)
//! reinfer = 1                # re-run the model on a flow every N packets (default 1)
//! fail_closed = false        # drop what cannot be parsed (default: pass it)
//! drop_margin = 3000         # a drop needs this int8 logit lead (default: the model's own)
//! sample_unsure = false      # sample the drops let through under the margin (default no)
//! drop_events = true         # sample every drop for `npk events` (default yes)
//! event_rate = 100           # at most this many samples per second per CPU (0: no limit)
//!
//! [actions]                  # class = pass | drop | count | sample (default pass)
//! 1 = "drop"
//! 2 = "sample"
//! ```
//!
//! Errors name the file, the line and the field.

use std::{
    collections::BTreeMap,
    fmt,
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use clap::ValueEnum;
use npk_common::{
    maps::Action,
    model::{MAX_CLASSES, MAX_DROP_MARGIN},
};
use serde::Deserialize;
use toml::Spanned;

use super::attach::{AttachMode, IfaceName};

/// Where a setting came from, for error messages: a flag or a file's line and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag(String),
    File {
        path: PathBuf,
        line: usize,
        field: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => f.write_str(flag),
            Self::File { path, line, field } => {
                write!(f, "{}:{line}: {field}", path.display())
            }
        }
    }
}

/// One class's action and where it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassAction {
    pub class: usize,
    pub action: Action,
    pub origin: Origin,
}

/// Everything `npk attach` needs besides `--pin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachConfig {
    pub iface: IfaceName,
    pub model: PathBuf,
    pub mode: AttachMode,
    pub actions: Vec<ClassAction>,
    pub reinfer: NonZeroU32,
    pub fail_closed: bool,
    /// Replaces the model's drop margin (`npk train` chose it) in what is pushed.
    pub drop_margin: Option<DropMargin>,
    /// Sample the packets of a drop class passed because the margin was below the drop margin.
    pub sample_unsure: bool,
    /// Sample every dropped packet (what `npk events` shows).
    pub drop_events: bool,
    pub event_rate: EventRate,
}

/// At most this many samples (events) per second on each CPU; 0: no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRate(pub u32);

impl EventRate {
    /// Enough to see what a flood is made of, few enough that its drops cost nothing more.
    pub const DEFAULT: Self = Self(100);
    /// One sample per 10 µs on a CPU: beyond it a limit is no limit.
    pub const MAX: u32 = 100_000;

    fn parse(value: i64) -> Result<Self, String> {
        u32::try_from(value)
            .ok()
            .filter(|&r| r <= Self::MAX)
            .map(Self)
            .ok_or_else(|| {
                format!(
                    "{value} is not a rate in 0..={} samples per second per CPU (0: no limit)",
                    Self::MAX
                )
            })
    }
}

impl fmt::Display for EventRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for EventRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(
            s.parse()
                .map_err(|_| format!("{s:?} is not a whole number"))?,
        )
    }
}

/// A drop margin given by the operator: 0..=[`MAX_DROP_MARGIN`] int8 logit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropMargin(pub u32);

impl DropMargin {
    fn parse(value: i64) -> Result<Self, String> {
        u32::try_from(value)
            .ok()
            .filter(|&m| m <= MAX_DROP_MARGIN)
            .map(Self)
            .ok_or_else(|| format!("{value} is not a margin in 0..={MAX_DROP_MARGIN}"))
    }
}

impl std::str::FromStr for DropMargin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(
            s.parse()
                .map_err(|_| format!("{s:?} is not a whole number"))?,
        )
    }
}

/// A config file is a few lines: anything larger is not one.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: crate::input::InputError,
    },
    #[error("{}: not UTF-8 text", path.display())]
    NotText { path: PathBuf },
    /// Not TOML, or a field missing, unknown or of the wrong type.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Value { origin: Origin, message: String },
    #[error("{second}: class {class} already has an action, set by {first}")]
    ConflictingActions {
        class: usize,
        first: Origin,
        second: Origin,
    },
}

/// One action per class: two settings of one class are refused, naming both (wherever they
/// came from: `1` and `01` in a file, or two `--action` flags).
pub fn check_one_action_per_class(actions: &[ClassAction]) -> Result<(), ConfigError> {
    for (i, second) in actions.iter().enumerate() {
        if let Some(first) = actions[..i].iter().find(|a| a.class == second.class) {
            return Err(ConfigError::ConflictingActions {
                class: second.class,
                first: first.origin.clone(),
                second: second.origin.clone(),
            });
        }
    }
    Ok(())
}

/// The name of an action as flags and files write it.
pub fn parse_action(name: &str) -> Option<Action> {
    match name {
        "pass" => Some(Action::Pass),
        "drop" => Some(Action::Drop),
        "count" => Some(Action::Count),
        "sample" => Some(Action::Sample),
        _ => None,
    }
}

/// A class number below [`MAX_CLASSES`].
pub fn parse_class(text: &str) -> Result<usize, String> {
    let class: usize = text
        .parse()
        .map_err(|_| format!("`{text}` is not a class number"))?;
    if class >= MAX_CLASSES {
        return Err(format!(
            "class {class} is beyond the limit of {MAX_CLASSES} classes"
        ));
    }
    Ok(class)
}

pub const ACTION_NAMES: &str = "pass, drop, count, sample";

/// `CLASS=ACTION` as `npk attach --action` takes it, e.g. `1=drop`.
impl std::str::FromStr for ClassAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (class, action) = s
            .split_once('=')
            .ok_or(format!("`{s}`: expected CLASS=ACTION, e.g. 1=drop"))?;
        Ok(Self {
            class: parse_class(class)?,
            action: parse_action(action)
                .ok_or(format!("`{action}`: actions are {ACTION_NAMES}"))?,
            origin: Origin::Flag(format!("--action {s}")),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interface: Spanned<String>,
    model: Spanned<PathBuf>,
    mode: Option<Spanned<String>>,
    reinfer: Option<Spanned<i64>>,
    fail_closed: Option<bool>,
    drop_margin: Option<Spanned<i64>>,
    sample_unsure: Option<bool>,
    drop_events: Option<bool>,
    event_rate: Option<Spanned<i64>>,
    actions: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

impl AttachConfig {
    /// Reads and checks a config file (a regular file of at most [`MAX_CONFIG_BYTES`]).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml(path, &read_text(path)?)
    }

    /// Only the interface a config file names, read whatever else the file holds now: what
    /// `npk detach --config` needs, so that a file edited into an invalid state since the
    /// attach still lets the service stop.
    pub fn interface_of_file(path: &Path) -> Result<IfaceName, ConfigError> {
        #[derive(Deserialize)]
        struct InterfaceOnly {
            interface: Spanned<String>,
        }
        let text = read_text(path)?;
        let raw: InterfaceOnly = parse_toml(path, &text)?;
        parse_interface(path, &text, &raw.interface)
    }

    /// `text` as the file `path` would hold it.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_toml(path, text)?;
        let origin =
            |field: &str, span: std::ops::Range<usize>| file_origin(path, text, field, span);
        let invalid = |origin: Origin, message: String| ConfigError::Value { origin, message };

        let iface = parse_interface(path, text, &raw.interface)?;
        let mode = match &raw.mode {
            None => AttachMode::Native,
            Some(m) => AttachMode::from_str(m.get_ref(), false).map_err(|_| {
                invalid(
                    origin("mode", m.span()),
                    format!("`{}`: modes are native, skb, tc", m.get_ref()),
                )
            })?,
        };
        let reinfer = match &raw.reinfer {
            None => NonZeroU32::MIN,
            Some(r) => u32::try_from(*r.get_ref())
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| {
                    invalid(
                        origin("reinfer", r.span()),
                        format!("{} is not a packet count of at least 1", r.get_ref()),
                    )
                })?,
        };
        let drop_margin = match &raw.drop_margin {
            None => None,
            Some(m) => Some(
                DropMargin::parse(*m.get_ref())
                    .map_err(|message| invalid(origin("drop_margin", m.span()), message))?,
            ),
        };
        let event_rate = match &raw.event_rate {
            None => EventRate::DEFAULT,
            Some(r) => EventRate::parse(*r.get_ref())
                .map_err(|message| invalid(origin("event_rate", r.span()), message))?,
        };
        let mut actions = Vec::new();
        for (class, action) in raw.actions.iter().flatten() {
            let field = format!("actions.{}", class.get_ref());
            let class_number = parse_class(class.get_ref())
                .map_err(|message| invalid(origin(&field, class.span()), message))?;
            let parsed = parse_action(action.get_ref()).ok_or_else(|| {
                invalid(
                    origin(&field, action.span()),
                    format!("`{}`: actions are {ACTION_NAMES}", action.get_ref()),
                )
            })?;
            actions.push((
                class.span().start,
                ClassAction {
                    class: class_number,
                    action: parsed,
                    origin: origin(&field, class.span()),
                },
            ));
        }
        // In the file's order (the table is sorted by key text): a conflict names the
        // earlier line first.
        actions.sort_by_key(|(at, _)| *at);
        let actions: Vec<ClassAction> = actions.into_iter().map(|(_, a)| a).collect();
        check_one_action_per_class(&actions)?;
        let model = raw.model.get_ref();
        let model = match path.parent() {
            Some(dir) if model.is_relative() => dir.join(model),
            _ => model.clone(),
        };
        Ok(Self {
            iface,
            model,
            mode,
            actions,
            reinfer,
            fail_closed: raw.fail_closed.unwrap_or(false),
            drop_margin,
            sample_unsure: raw.sample_unsure.unwrap_or(false),
            drop_events: raw.drop_events.unwrap_or(true),
            event_rate,
        })
    }
}

/// `text`, the file `path`, deserialized; not TOML, or a field missing, unknown or of the
/// wrong type, is an error naming the file and the line.
fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim_end().to_string(),
    })
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Where `field`, at `span` of `text` (the file `path`), was set.
fn file_origin(path: &Path, text: &str, field: &str, span: std::ops::Range<usize>) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line: line_of(text, span.start),
        field: field.to_string(),
    }
}

/// The `interface` field of the file `path` (its text `text`), checked as a name.
fn parse_interface(
    path: &Path,
    text: &str,
    interface: &Spanned<String>,
) -> Result<IfaceName, ConfigError> {
    interface
        .get_ref()
        .parse::<IfaceName>()
        .map_err(|e| ConfigError::Value {
            origin: file_origin(path, text, "interface", interface.span()),
            message: e.to_string(),
        })
}

/// The text of the config file `path`, bounded and type-checked.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes =
        crate::input::read_capped(path, MAX_CONFIG_BYTES).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    String::from_utf8(bytes).map_err(|_| ConfigError::NotText {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AttachConfig, String> {
        AttachConfig::from_toml(Path::new("/etc/npk/eth0.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_file_gives_every_setting() {
        let config = parse(
            "interface = \"eth0\"\nmodel = \"m.npk\"\nmode = \"tc\"\nreinfer = 8\n\
             fail_closed = true\ndrop_margin = 2500\nsample_unsure = true\n\
             drop_events = false\nevent_rate = 0\n\
             [actions]\n1 = \"drop\"\n3 = \"sample\"\n",
        )
        .unwrap();
        assert_eq!(config.drop_margin, Some(DropMargin(2500)));
        assert!(config.sample_unsure);
        assert!(!config.drop_events);
        assert_eq!(config.event_rate, EventRate(0));
        assert_eq!(config.iface.as_str(), "eth0");
        assert_eq!(config.model, Path::new("/etc/npk/m.npk"));
        assert_eq!(config.mode, AttachMode::Tc);
        assert_eq!(config.reinfer.get(), 8);
        assert!(config.fail_closed);
        let actions: Vec<(usize, Action)> =
            config.actions.iter().map(|a| (a.class, a.action)).collect();
        assert_eq!(actions, [(1, Action::Drop), (3, Action::Sample)]);
        assert_eq!(
            config.actions[0].origin.to_string(),
            "/etc/npk/eth0.toml:11: actions.1"
        );
    }

    #[test]
    fn files_are_bounded_and_regular_and_detach_needs_only_the_interface() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        let e = AttachConfig::from_file(&big).unwrap_err().to_string();
        assert!(e.contains("more than the 65536"), "{e}");
        for special in ["/dev/zero", "/dev/null"] {
            let e = AttachConfig::from_file(Path::new(special)).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        // Edited after the attach into a file attach refuses: detach still finds the
        // interface.
        let edited = dir.path().join("eth0.toml");
        std::fs::write(
            &edited,
            "interface = \"eth0\"\nmodel = \"m.npk\"\n[actions]\n1 = \"block\"\n",
        )
        .unwrap();
        assert!(AttachConfig::from_file(&edited).is_err());
        let iface = AttachConfig::interface_of_file(&edited).unwrap();
        assert_eq!(iface.as_str(), "eth0");
    }

    #[test]
    fn two_actions_for_one_class_are_refused_naming_both() {
        let flags: Vec<ClassAction> = ["1=drop", "2=sample", "1=pass"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let e = check_one_action_per_class(&flags).unwrap_err().to_string();
        assert_eq!(
            e,
            "--action 1=pass: class 1 already has an action, set by --action 1=drop"
        );
    }

    #[test]
    fn defaults_match_the_flags() {
        let config = parse("interface = \"eth0\"\nmodel = \"/srv/m.npk\"\n").unwrap();
        assert_eq!(config.model, Path::new("/srv/m.npk"));
        assert_eq!(config.mode, AttachMode::Native);
        assert_eq!(config.reinfer.get(), 1);
        assert!(!config.fail_closed && config.actions.is_empty());
        assert!(config.drop_margin.is_none() && !config.sample_unsure);
        assert!(config.drop_events);
        assert_eq!(config.event_rate, EventRate::DEFAULT);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let head = "interface = \"eth0\"\nmodel = \"m.npk\"\n";
        for (text, expected) in [
            (
                format!("{head}mode = \"xdp\"\n"),
                "/etc/npk/eth0.toml:3: mode: `xdp`: modes are native, skb, tc",
            ),
            (
                format!("{head}drop_margin = 70000\n"),
                "/etc/npk/eth0.toml:3: drop_margin: 70000 is not a margin in 0..=65534",
            ),
            (
                format!("{head}drop_margin = -1\n"),
                "/etc/npk/eth0.toml:3: drop_margin: -1 is not a margin in 0..=65534",
            ),
            (
                format!("{head}event_rate = 100001\n"),
                "/etc/npk/eth0.toml:3: event_rate: 100001 is not a rate in 0..=100000",
            ),
            (
                format!("{head}reinfer = 0\n"),
                "/etc/npk/eth0.toml:3: reinfer: 0 is not a packet count of at least 1",
            ),
            (
                format!("{head}\n[actions]\n1 = \"block\"\n"),
                "/etc/npk/eth0.toml:5: actions.1: `block`: actions are pass, drop, count, sample",
            ),
            (
                format!("{head}[actions]\n99 = \"drop\"\n"),
                "/etc/npk/eth0.toml:4: actions.99: class 99 is beyond the limit",
            ),
            (
                "interface = \"a/b\"\nmodel = \"m.npk\"\n".to_string(),
                "/etc/npk/eth0.toml:1: interface: ",
            ),
            (
                format!("{head}reinfr = 2\n"),
                "/etc/npk/eth0.toml:3: unknown field `reinfr`",
            ),
            (
                "interface = \"eth0\"\n".to_string(),
                "/etc/npk/eth0.toml:1: missing field `model`",
            ),
            (
                format!("{head}fail_closed = \"yes\"\n"),
                "/etc/npk/eth0.toml:3: invalid type",
            ),
            (
                format!("{head}[actions]\n1 = \"drop\"\n01 = \"pass\"\n"),
                "/etc/npk/eth0.toml:5: actions.01: class 1 already has an action, set by \
                 /etc/npk/eth0.toml:4: actions.1",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }
}
