//! The capacity search (kernel generator): the highest offered rate a running server answers
//! with at most LOSS_TOLERANCE of its requests lost, then a timed run that confirms it.

use serde::Serialize;

use super::{Result, ServeBenchError};
use crate::serve::client::ClientReport;

/// Trials of half a second's requests (at least TRIAL_MIN_REQUESTS), doubling the offered rate
/// from SEARCH_START_RPS until a trial fails, then bisecting until the bounds are
/// SEARCH_PRECISION apart.
const TRIAL_SECONDS: f64 = 0.5;
const TRIAL_MIN_REQUESTS: u64 = 20_000;
const SEARCH_START_RPS: f64 = 50_000.0;
const SEARCH_PRECISION: f64 = 0.02;
const SEARCH_MAX_RPS: f64 = 50e6;
const SEARCH_MIN_RPS: f64 = 1_000.0;
/// A trial passes when at most this fraction of its requests goes unanswered and the replies
/// keep up with the offered rate (RFC 2544's throughput, with a tolerance for the odd drop).
pub const LOSS_TOLERANCE: f64 = 0.001;
const KEEP_UP: f64 = 0.97;
/// Timed runs at the capacity found, each offered CONFIRM_STEP of the last one's rate.
const CONFIRM_ATTEMPTS: usize = 5;
const CONFIRM_STEP: f64 = 0.9;

/// One trial of the capacity search.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub offered_rps: f64,
    pub rps: f64,
    pub sent: u64,
    pub lost: u64,
    pub mismatches: u64,
    pub passed: bool,
}

impl Trial {
    /// Judges a run of `requests` offered at `rate`.
    pub(super) fn new(rate: f64, requests: u64, r: &ClientReport) -> Self {
        Self {
            offered_rps: rate,
            rps: r.rps,
            sent: r.sent,
            lost: r.lost,
            mismatches: r.mismatches,
            passed: r.sent == requests
                && r.lost as f64 <= LOSS_TOLERANCE * r.sent as f64
                && r.rps >= KEEP_UP * rate,
        }
    }
}

/// The highest offered rate the running server answers with at most LOSS_TOLERANCE lost:
/// doubling from SEARCH_START_RPS until a trial fails, then bisecting. `run` offers a number of
/// requests at a rate.
pub(super) fn find_capacity(
    mut run: impl FnMut(u64, f64) -> Result<ClientReport>,
) -> Result<(f64, Vec<Trial>)> {
    let mut trials = Vec::new();
    // A trial that fails is run once more: one hiccup of the VM's CPUs (a millisecond
    // overflows a veth ring) should not decide the capacity.
    let mut trial = |rate: f64| -> Result<bool> {
        let requests = ((rate * TRIAL_SECONDS) as u64).max(TRIAL_MIN_REQUESTS);
        for _ in 0..2 {
            let r = run(requests, rate)?;
            let trial = Trial::new(rate, requests, &r);
            let passed = trial.passed;
            trials.push(trial);
            if passed {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let (mut good, mut bad) = (0.0, SEARCH_START_RPS);
    while bad < SEARCH_MAX_RPS && trial(bad)? {
        good = bad;
        bad *= 2.0;
    }
    while bad - good > SEARCH_PRECISION * bad && bad > SEARCH_MIN_RPS {
        let mid = (good + bad) / 2.0;
        if trial(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    if good == 0.0 {
        return Err(ServeBenchError::NoCapacity { rps: bad });
    }
    Ok((good, trials))
}

/// The timed run at the capacity found: it is much longer than a trial, so if the server does
/// not sustain `rate`, CONFIRM_STEP of it is offered, a few times at most. `run` offers the
/// timed run's requests at a rate; returns its result, the rate and the failed attempts (as
/// trials, after `trials`).
pub(super) fn confirm<R>(
    mut rate: f64,
    requests: u64,
    mut trials: Vec<Trial>,
    mut run: impl FnMut(f64) -> Result<(ClientReport, R)>,
) -> Result<(ClientReport, R, f64, Vec<Trial>)> {
    let mut attempts = 1;
    loop {
        let (client, extra) = run(rate)?;
        let trial = Trial::new(rate, requests, &client);
        if trial.passed || attempts == CONFIRM_ATTEMPTS {
            return Ok((client, extra, rate, trials));
        }
        trials.push(trial);
        rate *= CONFIRM_STEP;
        attempts += 1;
    }
}
