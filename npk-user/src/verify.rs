//! `npk verify`: runs the real classifier through BPF_PROG_TEST_RUN on generated frames and
//! checks every result (features, logits, class, margin, action) against the userspace reference built
//! from the same npk-common code. Between them it runs the reply counter (the TC egress
//! program) on generated replies to the same flows, so that the reply features are checked too.

use aya::{
    Pod,
    maps::{HashMap, MapData},
};
use npk_common::{
    host::{HostState, ServiceKey, ServiceState},
    infer::{PlainLoop, Scratch, predict},
    maps::{Action, Config, FLAG_RECORD_LAST, MAP_FLOWS, MAP_HOSTS, MAP_SERVICES, Outcome},
    model::{MAX_CLASSES, Model},
    packet::{FlowKey, FlowState, NUM_FEATURES, ParseError, parse},
};
use serde::Serialize;

use crate::{
    kernel::{Classifier, KernelError, ProgramKind},
    packets::{
        features::FlowTable,
        synth::{flow_pool, random_frame},
    },
    rng::Rng,
};

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub packets: u64,
    /// Reply frames run through the egress program between the packets (not in `packets`).
    pub replies: u64,
    pub mismatches: u64,
    pub errors: u64,
    /// Classified frames of a drop class: dropped (the margin reached the model's drop margin),
    /// or passed as unsure. Both paths are checked only where both counts are above 0.
    pub dropped: u64,
    pub unsure: u64,
    /// Frames per outcome, for the human summary.
    #[serde(skip)]
    pub valid: u64,
    #[serde(skip)]
    pub rejected: u64,
    #[serde(skip)]
    pub first_problems: Vec<String>,
}

/// Runs `packets` frames through the kernel program of `kind` with `model` loaded and compares
/// each with the reference. `progress` is called every 4096 frames.
pub fn verify(
    model: &Model,
    kind: ProgramKind,
    packets: u64,
    seed: u64,
    progress: impl FnMut(u64),
) -> Result<VerifyReport, KernelError> {
    let mut classifier = Classifier::load_for(kind, model)?;
    verify_loaded(&mut classifier, model, packets, seed, progress)
}

/// [`verify`] on a classifier already loaded (one verifier walk for several models: under
/// emulation each walk takes minutes). Its flow, host and service state is cleared first,
/// since the reference starts from none; its model and configuration are replaced.
pub fn verify_loaded(
    classifier: &mut Classifier,
    model: &Model,
    packets: u64,
    seed: u64,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, KernelError> {
    let kind = classifier.kind;
    clear_state(classifier)?;
    classifier.push(model)?;
    let classes = model.header.num_classes as usize;
    // Every other class drops, so the returned action is checked too.
    let mut class_action = [Action::Pass as u8; MAX_CLASSES];
    for (c, a) in class_action.iter_mut().enumerate().take(classes) {
        if c % 2 == 1 {
            *a = Action::Drop as u8;
        }
    }
    classifier.set_config(&Config {
        flags: FLAG_RECORD_LAST,
        class_action,
        ..Config::default()
    })?;
    let version = classifier
        .active_model()?
        .ok_or(KernelError::NotActive)?
        .header
        .model_version;
    let (pass, drop) = match kind {
        ProgramKind::Tc => (0u32, 2u32), // TC_ACT_OK, TC_ACT_SHOT
        _ => (2u32, 1u32),               // XDP_PASS, XDP_DROP
    };

    // The skb test runner also refuses IP frames shorter than the fixed IP header.
    let min_len = if kind == ProgramKind::Tc { 14 + 40 } else { 14 };
    let mut rng = Rng::new(seed);
    // Few enough flows that the kernel's LRU never evicts one the reference still tracks; they
    // share source hosts and services, so host and service state builds up too.
    let flows_keys = flow_pool(&mut rng, 512);
    let mut tables = FlowTable::new();
    let mut scratch = Box::new(Scratch::new());
    // Replies to the same flows, drawn from a generator of their own: the classified frames are
    // the same with or without them.
    let reply_keys: Vec<FlowKey> = flows_keys.iter().map(FlowKey::reversed).collect();
    let mut reply_rng = Rng::new(seed ^ 0x5245_504c_4945_5321);
    let mut report = VerifyReport {
        packets: 0,
        replies: 0,
        mismatches: 0,
        errors: 0,
        dropped: 0,
        unsure: 0,
        valid: 0,
        rejected: 0,
        first_problems: Vec::new(),
    };
    let mut last_seq = classifier.last_record()?.seq;
    let note = |report: &mut VerifyReport, what: String| {
        if report.first_problems.len() < 10 {
            report.first_problems.push(what);
        }
    };
    for n in 0..packets {
        if n % 4096 == 0 {
            progress(n);
        }
        if reply_rng.bool(0.25) {
            let (_, reply) = random_frame(&mut reply_rng, &reply_keys, 14 + 40);
            report.replies += 1;
            match classifier.test_run_egress(&reply) {
                Ok(TC_ACT_OK) => {
                    // At the egress program's clock, which it records.
                    let now = classifier.last_record()?.reply_ns;
                    if let Ok(h) = parse(&reply[..]) {
                        tables.observe_reply_headers(&h, now);
                    }
                }
                Ok(action) => {
                    report.mismatches += 1;
                    note(
                        &mut report,
                        format!("reply before frame {n}: the egress program returned {action}"),
                    );
                }
                Err(e) => {
                    report.errors += 1;
                    note(
                        &mut report,
                        format!("reply before frame {n}: test run failed: {e:#}"),
                    );
                }
            }
        }
        let (_, frame) = random_frame(&mut rng, &flows_keys, min_len);
        report.packets += 1;
        let action = match classifier.test_run(&frame, 1) {
            Ok((action, _)) => action,
            Err(e) => {
                report.errors += 1;
                note(
                    &mut report,
                    format!("frame {n} ({} bytes): test run failed: {e:#}", frame.len()),
                );
                continue;
            }
        };
        let record = classifier.last_record()?;
        if record.seq != last_seq + 1 {
            report.errors += 1;
            note(
                &mut report,
                format!("frame {n}: the program left no record"),
            );
            last_seq = record.seq;
            continue;
        }
        last_seq = record.seq;
        match parse(&frame[..]) {
            Err(e) => {
                report.rejected += 1;
                let expected = match e {
                    ParseError::NotIp => Outcome::NotIp,
                    ParseError::Truncated => Outcome::Truncated,
                    ParseError::Malformed => Outcome::Malformed,
                };
                if record.outcome != expected as u32 || action != pass {
                    report.mismatches += 1;
                    note(
                        &mut report,
                        format!(
                            "frame {n}: reference {expected:?}, kernel outcome {} action {action}",
                            record.outcome
                        ),
                    );
                }
            }
            Ok(h) => {
                report.valid += 1;
                let features: &mut [i32; NUM_FEATURES] = scratch
                    .features
                    .first_chunk_mut()
                    .expect("MAX_INPUTS >= NUM_FEATURES");
                tables.observe_headers(&h, record.now_ns, features);
                let prediction = predict(model, &mut scratch, &mut PlainLoop);
                let class = prediction.class;
                let confident = prediction.confident(model.header.drop_margin);
                let logits = scratch.logits(model);
                let drop_class = class_action[class as usize] == Action::Drop as u8;
                report.dropped += u64::from(drop_class && confident);
                report.unsure += u64::from(drop_class && !confident);
                let want_action = if drop_class && confident { drop } else { pass };
                let same = record.outcome == Outcome::Classified as u32
                    && record.features[..] == scratch.features[..NUM_FEATURES]
                    && record.class == class
                    && record.margin == prediction.margin
                    && record.confident == u32::from(confident)
                    && record.logits[..classes] == *logits
                    && record.model_version == version
                    && action == want_action;
                if !same {
                    report.mismatches += 1;
                    note(
                        &mut report,
                        format!(
                            "frame {n}: reference class {class} margin {} logits {logits:?}, kernel outcome {} class {} margin {} logits {:?} action {action}",
                            prediction.margin,
                            record.outcome,
                            record.class,
                            record.margin,
                            &record.logits[..classes]
                        ),
                    );
                }
            }
        }
    }
    progress(packets);
    Ok(report)
}

/// The TC return code that passes a frame.
const TC_ACT_OK: u32 = 0;

/// Empties the classifier's per-flow, per-host and per-service maps.
fn clear_state(classifier: &mut Classifier) -> Result<(), KernelError> {
    fn clear<K: Pod, V: Pod>(classifier: &mut Classifier, name: &str) -> Result<(), KernelError> {
        let map = classifier
            .ebpf
            .map_mut(name)
            .ok_or_else(|| KernelError::MissingMap(name.into()))?;
        let mut map = HashMap::<&mut MapData, K, V>::try_from(map)?;
        // Collected first: deleting while iterating restarts the kernel's walk.
        let keys = map.keys().collect::<Result<Vec<K>, _>>()?;
        for key in keys {
            map.remove(&key)?;
        }
        Ok(())
    }
    clear::<FlowKey, FlowState>(classifier, MAP_FLOWS)?;
    clear::<[u8; 16], HostState>(classifier, MAP_HOSTS)?;
    clear::<ServiceKey, ServiceState>(classifier, MAP_SERVICES)
}
