//! `npk events`: streams what the kernel decided for the packets it sampled (every drop by
//! default, `sample` classes, unsure drops with `--sample-unsure`) on one attachment or on all
//! of them, foreground or pinned, until Ctrl-C; says when the kernel lost events.

use std::{
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use npk_common::maps::Counters;
use serde_json::json;

use crate::{
    kernel::{
        ControlMaps,
        attach::{self, IfaceName},
    },
    noteln, outln,
    packets::capture::Sampler,
    stats::{
        events::{Event, KernelClock},
        exporter::HostStats,
    },
    sys::stop_flag,
};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The attachment to follow (default: every attachment on this host).
    #[arg(long)]
    iface: Option<IfaceName>,
    /// One JSON object per line: {"type": "packet", "time", "iface", "action", "class",
    /// "margin", ...}, and {"type": "lost", ...} when the kernel could not keep events.
    #[arg(long)]
    json: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// One attachment being followed.
struct Followed {
    iface: IfaceName,
    samples: Sampler,
    maps: ControlMaps,
    /// Its lost counters when last looked at.
    lost: Lost,
}

/// Events the kernel could not keep: ring buffer full (nobody read fast enough), or over the
/// attachment's `--event-rate`.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Lost {
    ring_full: u64,
    over_rate: u64,
}

impl Lost {
    fn of(c: &Counters) -> Self {
        Self {
            ring_full: c.samples_lost,
            over_rate: c.samples_limited,
        }
    }
}

pub fn run(args: EventsArgs) -> Result<()> {
    let targets: Vec<(IfaceName, PathBuf)> = match &args.iface {
        Some(iface) => vec![(iface.clone(), attach::live_pins(iface)?)],
        None => HostStats::read()?
            .attachments
            .into_iter()
            .map(|a| (a.iface, a.pins))
            .collect(),
    };
    if targets.is_empty() {
        bail!("nothing attached: no npk attachment on this host to show events of");
    }
    let mut followed = Vec::new();
    for (iface, dir) in targets {
        let samples = Sampler::from_pins(&dir)?;
        let maps = ControlMaps::from_pins(&dir)?;
        let lost = Lost::of(&maps.counters()?);
        followed.push(Followed {
            iface,
            samples,
            maps,
            lost,
        });
    }
    let names: Vec<&str> = followed.iter().map(|f| f.iface.as_str()).collect();
    noteln!("events of {} (Ctrl-C stops)", names.join(", "));

    let stop = stop_flag();
    let clock = KernelClock::now();
    let mut shown = 0u64;
    let mut last_check = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        wait_readable(&followed, Duration::from_millis(500))?;
        for f in &mut followed {
            let mut printed = Ok(());
            f.samples.drain(|sample| {
                if printed.is_err() || args.count.is_some_and(|n| shown >= n) {
                    return;
                }
                let event = Event::of(sample, &f.iface, clock);
                printed = if args.json {
                    outln!("{}", event.to_json())
                } else {
                    outln!("{}", event.line())
                };
                shown += 1;
            });
            printed?;
        }
        if args.count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            report_losses(&mut followed, args.json)?;
            followed.retain(|f| {
                let alive = attach::live_pins(&f.iface).is_ok();
                if !alive {
                    noteln!("{}: detached, no more events from it", f.iface);
                }
                alive
            });
            if followed.is_empty() {
                bail!("every attachment followed is gone (detached)");
            }
        }
    }
    Ok(())
}

/// Says how many events each attachment's kernel side lost since the last look.
fn report_losses(followed: &mut [Followed], json: bool) -> Result<()> {
    for f in followed {
        let Ok(counters) = f.maps.counters() else {
            continue;
        };
        let now = Lost::of(&counters);
        if now == f.lost {
            continue;
        }
        let (ring_full, over_rate) = (
            now.ring_full.saturating_sub(f.lost.ring_full),
            now.over_rate.saturating_sub(f.lost.over_rate),
        );
        f.lost = now;
        if json {
            outln!(
                "{}",
                json!({"type": "lost", "iface": f.iface.as_str(), "ring_full": ring_full,
                       "over_rate": over_rate})
            )?;
        } else {
            noteln!(
                "{}: {ring_full} events lost (ring buffer full), {over_rate} over the event rate",
                f.iface
            );
        }
    }
    Ok(())
}

/// Waits until a ring buffer has samples, `timeout` passes or a signal arrives.
fn wait_readable(followed: &[Followed], timeout: Duration) -> Result<()> {
    let mut fds: Vec<libc::pollfd> = followed
        .iter()
        .map(|f| libc::pollfd {
            fd: f.samples.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
    let n = unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        // A stop signal: the caller's loop sees the flag.
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("waiting for events (poll)");
        }
    }
    Ok(())
}
