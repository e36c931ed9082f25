//! Attaching the classifier to an interface, pinning it in bpffs so later commands (`npk push`,
//! `npk stats`, `npk detach`) find it, and detaching it.
//!
//! Layout: `/sys/fs/bpf/npk/<iface>/` holds the control maps (by map name), `prog` and `link`.
//! The link pin keeps the program attached after npk exits; removing it detaches.

use std::{
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail, ensure};
use aya::programs::{
    ProgramInfo, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc,
};
use npk_common::{
    maps::{Config, MAP_FLOWS, MAP_SAMPLES},
    model::Model,
};

use super::{BpfStats, Classifier, ProgramKind, run_time_stats};

pub const BPFFS: &str = "/sys/fs/bpf";

/// Where npk pins what it attached to `iface`.
pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(BPFFS).join("npk").join(iface)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// XDP in the driver (fastest; the driver must support it).
    Native,
    /// Generic XDP in the network stack (any interface).
    Skb,
    /// TC clsact ingress (where XDP does not fit).
    Tc,
}

/// A classifier attached to an interface. Dropping it detaches unless it was made persistent.
pub struct Attachment {
    pub classifier: Classifier,
    pub iface: String,
    dir: PathBuf,
    persistent: bool,
    /// Keeps the kernel's run-time accounting on while a foreground attachment lives.
    _stats: Option<OwnedFd>,
    _link: Option<FdLink>,
}

fn check_iface(iface: &str) -> Result<()> {
    ensure!(
        !iface.is_empty()
            && !iface.contains('/')
            && Path::new("/sys/class/net").join(iface).exists(),
        "no network interface named `{iface}` (see `ip link`)"
    );
    Ok(())
}

fn ensure_bpffs() -> Result<()> {
    // SAFETY: statfs on a constant path with a zeroed out-parameter.
    let mounted = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/sys/fs/bpf".as_ptr(), &mut st) == 0 && st.f_type == 0xcafe4a11
    };
    ensure!(
        mounted,
        "bpffs is not mounted at {BPFFS}: run `mount -t bpf bpf {BPFFS}` (scripts/setup.sh does)"
    );
    Ok(())
}

/// Loads the classifier, installs `model` and `config`, attaches it to `iface` and pins it.
/// On any error nothing stays attached or pinned.
pub fn attach(
    iface: &str,
    mode: AttachMode,
    model: &Model,
    config: &Config,
    persistent: bool,
) -> Result<Attachment> {
    check_iface(iface)?;
    ensure_bpffs()?;
    let dir = pin_dir(iface);
    ensure!(
        !dir.exists(),
        "npk is already attached to {iface} ({} exists): use `npk push` to change the model or \
         `npk detach --iface {iface}` first",
        dir.display()
    );
    let kind = if mode == AttachMode::Tc {
        ProgramKind::Tc
    } else {
        ProgramKind::Xdp
    };
    let mut classifier = Classifier::load_for(kind, model)?;
    classifier.push(model)?;
    classifier.set_config(config)?;
    // run_time_ns/run_cnt for `npk stats` from the first packet (two clock reads per run).
    let run_time_stats = run_time_stats();
    let name = kind.program(classifier.loops);
    let prog = classifier
        .ebpf
        .program_mut(name)
        .context("program missing")?;
    let link: FdLink = match mode {
        AttachMode::Native | AttachMode::Skb => {
            let xdp: &mut Xdp = prog.try_into()?;
            let flags = if mode == AttachMode::Native {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            let id = xdp.attach(iface, flags).with_context(|| {
                format!(
                    "attaching XDP in {mode:?} mode to {iface} failed{}",
                    if mode == AttachMode::Native {
                        " (does its driver support native XDP? try --mode skb or --mode tc)"
                    } else {
                        ""
                    }
                )
            })?;
            xdp.take_link(id)?
                .try_into()
                .context("XDP link is not a bpf_link")?
        }
        AttachMode::Tc => {
            if let Err(e) = tc::qdisc_add_clsact(iface) {
                // An existing clsact qdisc is fine; anything else is reported.
                if !e.to_string().contains("exists") {
                    return Err(e).context(format!("adding the clsact qdisc to {iface}"));
                }
            }
            let sc: &mut SchedClassifier = prog.try_into()?;
            let id = sc
                .attach(iface, TcAttachType::Ingress)
                .with_context(|| format!("attaching the TC classifier to {iface} failed"))?;
            sc.take_link(id)?
                .try_into()
                .context("TC link is not a bpf_link")?
        }
    };
    let pinned = (|| -> Result<()> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        classifier.maps.pin(&dir)?;
        for map in [MAP_FLOWS, MAP_SAMPLES] {
            let m = classifier.ebpf.map(map).context("map missing")?;
            m.pin(dir.join(map))
                .with_context(|| format!("pinning {map}"))?;
        }
        let prog = classifier
            .ebpf
            .program_mut(name)
            .context("program missing")?;
        prog.pin(dir.join("prog")).context("pinning the program")?;
        Ok(())
    })();
    let mut attachment = Attachment {
        classifier,
        iface: iface.to_string(),
        dir,
        persistent: false,
        _stats: None,
        _link: None,
    };
    pinned?;
    if persistent {
        link.pin(attachment.dir.join("link"))
            .context("pinning the link")?;
        attachment.persistent = true;
        // The pins outlive this process, and its BPF_ENABLE_STATS with it.
        BpfStats::on_for_pins();
    } else {
        attachment._link = Some(link);
        attachment._stats = run_time_stats;
    }
    Ok(attachment)
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.persistent {
            // The link goes with `_link`; the pins go here.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Detaches what `npk attach --pin` left on `iface` and removes its pins.
pub fn detach(iface: &str) -> Result<()> {
    let dir = pin_dir(iface);
    if !dir.exists() {
        bail!("npk has nothing attached to {iface} (no {})", dir.display());
    }
    let link = dir.join("link");
    if link.exists() {
        PinnedLink::from_pin(&link)
            .with_context(|| format!("opening {}", link.display()))?
            .unpin()
            .context("removing the link pin")?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    // Foreground attachments pin their maps too, but only `--pin` ones leave a link.
    let pins_left = dir
        .parent()
        .and_then(|npk| std::fs::read_dir(npk).ok())
        .is_some_and(|mut attached| {
            attached.any(|a| a.is_ok_and(|a| a.path().join("link").exists()))
        });
    if !pins_left {
        BpfStats::restore_after_pins();
    }
    Ok(())
}

/// The kernel's accounting of the attached program (run count and time, when
/// kernel.bpf_stats_enabled is on).
pub fn program_info(iface: &str) -> Result<ProgramInfo> {
    let path = pin_dir(iface).join("prog");
    ProgramInfo::from_pin(&path).with_context(|| format!("opening {}", path.display()))
}
