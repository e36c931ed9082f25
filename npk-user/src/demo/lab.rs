//! `npk demo` on the real-tool lab ([`crate::packets::lab`]): runs of settings family A
//! recorded through the kernel for training, then two runs of family B, whose settings never
//! occur in A, with the model attached at the server's ingress:
//!
//! - held out: every class passed, every verdict scored per class and per scenario. Passing
//!   keeps the traffic as the tools send it: a dropped packet changes what follows (an iperf3
//!   whose control connection is dropped never streams, a scan whose probes go unanswered
//!   retries), so scores taken while dropping would describe other traffic.
//! - enforced: attacks dropped, the verdicts scored the same way.

use std::{
    sync::{Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use npk_common::{
    maps::{Action, Config, Sample},
    model::{MAX_CLASSES, Model},
};
use serde::Serialize;

use super::{
    CLASSES, DemoConfig, DemoReport, Group, Outputs, Result, Say, Snapshot, drop_attacks,
    interrupted, live_header, train_model,
};
use crate::{
    kernel::attach::{self, Attachment},
    metrics::{ClassMetrics, Confusion},
    packets::{
        capture::{self, CaptureError, Sampler},
        features::FeatureCsv,
        lab::{
            self, LabConfig, ServerSide,
            scenario::{Family, ToolScenario},
        },
        traffic::CLASS_NAMES,
    },
    quantize::margin::DropCounts,
};

/// How the live run went, per class and per scenario (the `--json` line carries both).
#[derive(Clone, Debug, Serialize)]
pub struct LiveScores {
    /// Seeds of the family-A runs the model was trained on.
    pub train_seeds: Vec<u64>,
    /// Seed of the family-B run classified with every class passed (the held-out scores).
    pub live_seed: u64,
    pub per_class: Vec<ClassMetrics>,
    pub per_scenario: Vec<ScenarioScore>,
    /// The family-B run classified with attacks dropped.
    pub enforced: Enforced,
}

/// The run with attacks dropped.
#[derive(Clone, Debug, Serialize)]
pub struct Enforced {
    pub seed: u64,
    #[serde(flatten)]
    pub rates: super::Rates,
    pub per_scenario: Vec<ScenarioScore>,
}

/// One scenario of the live run.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioScore {
    pub scenario: ToolScenario,
    pub class: &'static str,
    /// Packets of the scenario the kernel classified (and sampled).
    pub packets: u64,
    /// Fraction given the scenario's own class.
    pub correct: f64,
    /// Fraction given an attack class, i.e. dropped: the detection rate of an attack, the
    /// benign drop rate of a benign scenario.
    pub dropped: f64,
}

/// Seeds: family A `100 * seed + 1..=runs`, family B `200 + 2 * seed - 1` (held out) and
/// `200 + 2 * seed` (enforced); seed 1: 101.., 201 and 202, the seeds of scripts/heldout.sh.
fn train_seeds(seed: u64, runs: u32) -> Vec<u64> {
    (1..=u64::from(runs))
        .map(|i| seed.wrapping_mul(100).wrapping_add(i))
        .collect()
}

fn live_seeds(seed: u64) -> (u64, u64) {
    let held_out = 199u64.wrapping_add(seed.wrapping_mul(2));
    (held_out, held_out.wrapping_add(1))
}

fn index(s: ToolScenario) -> usize {
    ToolScenario::ALL.iter().position(|&a| a == s).unwrap_or(0)
}

/// The lab's run in `config`, the demo's scenarios: all of them.
fn lab_config(config: &DemoConfig, seconds: Duration, seed: u64, family: Family) -> LabConfig {
    LabConfig {
        scenarios: ToolScenario::ALL.to_vec(),
        duration: seconds,
        seed,
        family,
        pcap: None,
        mode: config.mode,
    }
}

/// The line naming a run's namespaces and interface (the first line of a run).
fn lab_line(side: &ServerSide, what: &str) -> String {
    format!(
        "lab: namespace {} (clients), namespace {} (servers), veth {} (server end, {what})",
        side.client_netns,
        side.server_netns,
        side.iface.as_str()
    )
}

pub(super) fn run(
    config: &DemoConfig,
    train_runs: u32,
    stop: &AtomicBool,
    say: Say,
) -> Result<DemoReport> {
    let out = Outputs::check(config)?;
    lab::check_tools()?;
    let seeds = train_seeds(config.seed, train_runs.max(1));
    let (live_seed, enforced_seed) = live_seeds(config.seed);

    let mut rows = vec![Vec::new(); ToolScenario::ALL.len()];
    let mut csv = FeatureCsv::create(&out.csv)?;
    for (i, &seed) in seeds.iter().enumerate() {
        say(&format!(
            "capture: lab run {} of {} (settings family A, seed {seed}, {} s): real tools, \
             features recorded through the kernel classifier",
            i + 1,
            seeds.len(),
            config.capture.as_secs()
        ));
        let mode = config.mode;
        let manifest = {
            let say = Mutex::new(&mut *say);
            let recorded = Mutex::new((&mut rows, &mut csv));
            lab::run_with(
                &lab_config(config, config.capture, seed, Family::A),
                stop,
                |side| {
                    tell(&say, &lab_line(side, "classifier recording"));
                    capture::start(side.iface, mode)
                },
                |label, sample| {
                    if let Some((scenario, class)) = label {
                        let (rows, csv) = &mut *lock(&recorded);
                        rows[index(scenario)].push(sample.features);
                        csv.write(&sample.features, class);
                    }
                },
                |_| {},
            )?
            .0
        };
        let per: Vec<String> = manifest
            .scenarios
            .iter()
            .map(|s| format!("{} {}", s.scenario.name(), s.packets))
            .collect();
        say(&format!(
            "  recorded per scenario: {}{}",
            per.join(", "),
            if manifest.samples_lost > 0 {
                format!("; {} not sampled (ring buffer full)", manifest.samples_lost)
            } else {
                String::new()
            }
        ));
        interrupted(stop)?;
    }
    csv.commit()?;

    // A scenario too rare to learn from in a short run (e.g. a few DNS batches) is left out.
    let mut groups = Vec::new();
    for (s, rows) in ToolScenario::ALL.iter().zip(rows) {
        if rows.len() < 10 {
            say(&format!(
                "  {} left out of training: {} packets recorded",
                s.name(),
                rows.len()
            ));
            continue;
        }
        groups.push(Group {
            name: s.name(),
            class: s.class(),
            rows,
        });
    }
    let trained = train_model(&groups, config, say)?;
    out.write_model(&trained)?;
    interrupted(stop)?;

    let model = &*trained.file.kernel_model()?;
    let pass_all = capture::sample_all([Action::Pass as u8; MAX_CLASSES]);
    let what = "every class passed, verdicts recorded: the held-out scores";
    let live = classify_run(config, model, live_seed, pass_all, what, stop, say)?;
    interrupted(stop)?;
    let confusion = live.confusion.rows();
    let rates = out.write_result(
        &confusion,
        &live.drops,
        live.samples_lost,
        "called an attack (dropped if enforced)",
        say,
    )?;
    let per_scenario = live.per_scenario();
    for line in scores_text(&live.confusion, &per_scenario).lines() {
        say(line);
    }

    let seed = enforced_seed;
    let what = "attacks dropped";
    let enforced = classify_run(config, model, seed, drop_attacks(), what, stop, say)?;
    interrupted(stop)?;
    let enforced = Enforced {
        seed,
        rates: super::summarize(&enforced.confusion.rows(), &enforced.drops),
        per_scenario: enforced.per_scenario(),
    };
    let r = &enforced.rates;
    say(&format!(
        "enforced (family B, seed {seed}, attacks dropped): {} packets, accuracy {:.4}, attack \
         packets dropped {:.2}%, benign packets dropped {:.2}%",
        r.packets,
        r.accuracy,
        r.attack_drop_rate * 100.0,
        r.benign_drop_rate * 100.0
    ));
    let scores = LiveScores {
        train_seeds: seeds,
        live_seed,
        per_class: live.confusion.per_class(),
        per_scenario,
        enforced,
    };
    Ok(DemoReport {
        rates,
        lab: Some(scores),
        confusion,
        held_out: trained.held_out,
        samples_lost: live.samples_lost,
        files: out.paths(),
    })
}

/// Says `line` from whichever thread holds the lab.
fn tell<S: FnMut(&str) + ?Sized>(say: &Mutex<&mut S>, line: &str) {
    let mut say = lock(say);
    (*say)(line);
}

/// Locks a mutex whose holder cannot have panicked mid-update (a panic ends the demo).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The live run's verdicts.
struct Live {
    /// Over classes: every labelled packet's class against the kernel's verdict.
    confusion: Confusion,
    /// Per scenario (indexed like [`ToolScenario::ALL`]): packets per predicted class, and
    /// those the kernel drops (or would, with attacks passed) at the model's drop margin.
    scenarios: Vec<[u64; CLASSES]>,
    scenario_drops: Vec<u64>,
    drops: DropCounts,
    samples_lost: u64,
}

impl Live {
    fn new(model: &Model) -> Self {
        Self {
            confusion: Confusion::new(CLASSES),
            scenarios: vec![[0; CLASSES]; ToolScenario::ALL.len()],
            scenario_drops: vec![0; ToolScenario::ALL.len()],
            drops: DropCounts::new(CLASSES, model.header.drop_margin),
            samples_lost: 0,
        }
    }

    fn score(&mut self, scenario: ToolScenario, class: u32, sample: &Sample) {
        let predicted = (sample.class as usize).min(CLASSES - 1);
        self.confusion.add(class as usize, predicted);
        self.scenarios[index(scenario)][predicted] += 1;
        let dropped = self.drops.add(class as usize, predicted, sample.margin);
        self.scenario_drops[index(scenario)] += u64::from(dropped);
    }

    fn per_scenario(&self) -> Vec<ScenarioScore> {
        ToolScenario::ALL
            .iter()
            .zip(&self.scenarios)
            .zip(&self.scenario_drops)
            .filter(|((_, counts), _)| counts.iter().sum::<u64>() > 0)
            .map(|((&scenario, counts), &dropped)| {
                let packets: u64 = counts.iter().sum();
                let fraction = |n: u64| n as f64 / packets as f64;
                ScenarioScore {
                    scenario,
                    class: scenario.class_name(),
                    packets,
                    correct: fraction(counts[scenario.class() as usize]),
                    dropped: fraction(dropped),
                }
            })
            .collect()
    }
}

/// Phase 4 on the lab: the model attached at the server's ingress with `actions` while a
/// family-B run sends, a live table every second.
fn classify_run(
    config: &DemoConfig,
    model: &Model,
    seed: u64,
    actions: Config,
    what: &str,
    stop: &AtomicBool,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<Live> {
    say(&format!(
        "live: lab run of settings family B (seed {seed}, {} s, settings never in training), \
         model attached at the server's ingress ({}), {what}",
        config.replay.as_secs(),
        config.mode
    ));
    let say = Mutex::new(say);
    let live = Mutex::new(Live::new(model));
    let start = Instant::now();
    let mut last: Option<Snapshot> = None;
    let mode = config.mode;
    let attach = |side: &ServerSide| -> Result<(Attachment, Sampler), CaptureError> {
        tell(&say, &lab_line(side, "model attached"));
        let mut attachment = attach::attach(side.iface, mode, model, &actions, false)?;
        let sampler = Sampler::take(&mut attachment.classifier)?;
        tell(&say, &live_header());
        Ok((attachment, sampler))
    };
    let tick = |attachment: &Attachment| {
        if last
            .as_ref()
            .is_some_and(|l| l.at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        // A failed read skips a row; the run's result comes from the samples.
        let Ok(c) = attachment.classifier.counters() else {
            return;
        };
        let now = Snapshot::take(attachment, &c, start);
        let mut live = lock(&live);
        live.samples_lost = c.samples_lost;
        if let Some(before) = &last {
            tell(&say, &now.row(before, &c, &live.confusion.rows()));
        }
        last = Some(now);
    };
    lab::run_with(
        &lab_config(config, config.replay, seed, Family::B),
        stop,
        attach,
        |label, sample| {
            if let Some((scenario, class)) = label {
                lock(&live).score(scenario, class, sample);
            }
        },
        tick,
    )?;
    Ok(live.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Per-class precision/recall/F1 and per-scenario correct class and drops, as text.
fn scores_text(confusion: &Confusion, per_scenario: &[ScenarioScore]) -> String {
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let mut s = format!(
        "held out (family B, classified live by the kernel):\n  {:<11} {:>8} {:>9} {:>7} {:>6}",
        "class", "packets", "precision", "recall", "F1"
    );
    for m in confusion.per_class() {
        s += &format!(
            "\n  {:<11} {:>8} {:>9} {:>7} {:>6}",
            CLASS_NAMES[m.class],
            m.support,
            fmt(m.precision),
            fmt(m.recall),
            fmt(m.f1)
        );
    }
    s += &format!(
        "\n  {:<14} {:<11} {:>8} {:>8} {:>8}",
        "scenario", "class", "packets", "correct", "dropped"
    );
    for p in per_scenario {
        s += &format!(
            "\n  {:<14} {:<11} {:>8} {:>8.4} {:>8.4}",
            p.scenario.name(),
            p.class,
            p.packets,
            p.correct,
            p.dropped
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_seeds_are_those_of_the_held_out_script() {
        assert_eq!(train_seeds(1, 4), [101, 102, 103, 104]);
        assert_eq!(train_seeds(2, 2), [201, 202]);
        assert_eq!(live_seeds(1), (201, 202));
        assert_eq!(live_seeds(2), (203, 204));
    }

    #[test]
    fn scenario_scores_count_any_attack_class_as_dropped() {
        let mut model: Box<Model> = bytemuck::zeroed_box();
        model.header.drop_margin = 10;
        let mut live = Live::new(&model);
        let sample = |class| Sample {
            class,
            margin: 10,
            ..bytemuck::Zeroable::zeroed()
        };
        // udp-flood: 1 right, 2 called port_scan (dropped), 1 benign (passed).
        for class in [2, 3, 3, 0] {
            live.score(ToolScenario::UdpFlood, 2, &sample(class));
        }
        // dns (benign): 3 passed, 1 called syn_flood (dropped).
        for class in [0, 0, 0, 1] {
            live.score(ToolScenario::Dns, 0, &sample(class));
        }
        let scores = live.per_scenario();
        assert_eq!(scores.len(), 2, "scenarios without packets are left out");
        let dns = &scores[0];
        assert_eq!((dns.scenario, dns.packets), (ToolScenario::Dns, 4));
        assert_eq!((dns.correct, dns.dropped), (0.75, 0.25));
        let flood = &scores[1];
        assert_eq!((flood.correct, flood.dropped), (0.25, 0.75));
        assert_eq!(live.confusion.count(2, 3), 2);
        assert_eq!(live.confusion.recall(0), Some(0.75));
    }
}
