//! The drop margin: how far the int8 model's winning logit must lead the runner-up before a
//! drop class drops a packet ([`npk_common::model::ModelHeader::drop_margin`]).
//!
//! Benign traffic dropped is what an operator pays for a mistake, so `npk train` chooses the
//! smallest margin at which at most a target fraction of benign validation rows would drop,
//! and `npk eval` reports what the kernel would drop with it. Everything here counts the
//! kernel's arithmetic ([`Quantized::infer`]), and treats [`BENIGN_CLASS`] as the one class
//! that passes, every other as dropping: the lab's labels and the README's configuration.

use serde::Serialize;

use super::{IntScratch, Quantized};
use crate::dataset::Dataset;
use npk_common::model::MAX_DROP_MARGIN;

/// The class of benign traffic in packet data (`npk gen`/`npk features` label it 0).
pub const BENIGN_CLASS: usize = 0;
/// `npk train`'s default target: at most 1 benign packet in 1,000 dropped on validation rows.
pub const DEFAULT_MAX_BENIGN_DROP: f64 = 0.001;

/// What the kernel would do with the rows of one true class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassDrops {
    pub rows: u64,
    /// Called an attack class with a margin at or above the drop margin.
    pub dropped: u64,
    /// Called an attack class below the drop margin: passed, counted as unsure.
    pub unsure: u64,
}

/// Per true class, what the kernel would drop at `drop_margin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    pub drop_margin: u32,
    pub per_class: Vec<ClassDrops>,
}

impl DropCounts {
    pub fn new(classes: usize, drop_margin: u32) -> Self {
        Self {
            drop_margin,
            per_class: vec![ClassDrops::default(); classes],
        }
    }

    /// Counts a row of class `truth` that the int8 model called `class` with `margin`; returns
    /// whether the kernel drops it.
    ///
    /// # Panics
    /// If `truth` is not below the class count (loaders check labels).
    pub fn add(&mut self, truth: usize, class: usize, margin: u32) -> bool {
        let c = &mut self.per_class[truth];
        c.rows += 1;
        let attack = class != BENIGN_CLASS;
        let dropped = attack && margin >= self.drop_margin;
        c.dropped += u64::from(dropped);
        c.unsure += u64::from(attack && !dropped);
        dropped
    }

    /// Fraction of benign rows dropped (0 without benign rows).
    pub fn benign_drop_rate(&self) -> f64 {
        self.per_class
            .get(BENIGN_CLASS)
            .map_or(0.0, |c| c.dropped as f64 / c.rows.max(1) as f64)
    }

    /// Fraction of attack rows (every other class) dropped (0 without attack rows).
    pub fn attack_drop_rate(&self) -> f64 {
        let attacks = self.per_class.iter().skip(BENIGN_CLASS + 1);
        let (rows, dropped) = attacks.fold((0, 0), |(r, d), c| (r + c.rows, d + c.dropped));
        dropped as f64 / rows.max(1) as f64
    }
}

/// The margin `npk train` chose, and what it does on the rows it was chosen on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MarginChoice {
    pub drop_margin: u32,
    pub max_benign_drop: f64,
    /// At the chosen margin, on the rows it was chosen on.
    pub benign_drop_rate: f64,
    pub attack_drop_rate: f64,
    /// Without a margin (0), on the same rows.
    pub benign_drop_rate_without: f64,
    pub attack_drop_rate_without: f64,
    pub rows: usize,
}

/// The smallest drop margin at which at most `max_benign_drop` of the benign rows of `raw` drop
/// (ties at the margin drop together, so fewer may), with the rates it gives there.
///
/// # Panics
/// If a row of `raw` is not as long as the model's input or a label is not below its classes.
pub fn choose_drop_margin(
    quantized: &Quantized,
    raw: &Dataset,
    max_benign_drop: f64,
) -> MarginChoice {
    let classes = quantized.model.num_classes();
    let mut scratch = IntScratch::default();
    let mut predictions = Vec::with_capacity(raw.len());
    let mut benign_margins = Vec::new();
    let mut benign_rows = 0u64;
    for i in 0..raw.len() {
        let p = quantized.infer(raw.row(i), &mut scratch);
        let truth = raw.labels[i] as usize;
        if truth == BENIGN_CLASS {
            benign_rows += 1;
            if p.class as usize != BENIGN_CLASS {
                benign_margins.push(p.margin);
            }
        }
        predictions.push((truth, p.class as usize, p.margin));
    }
    // Margins of benign rows called attacks, largest first: at most `allowed` of them may stay
    // at or above the margin, so it goes just above the next one.
    benign_margins.sort_unstable_by(|a, b| b.cmp(a));
    let allowed = (max_benign_drop * benign_rows as f64).floor() as usize;
    let drop_margin = benign_margins
        .get(allowed)
        .map_or(0, |&m| (m + 1).min(MAX_DROP_MARGIN));
    let counts = |margin| {
        let mut c = DropCounts::new(classes, margin);
        for &(truth, class, m) in &predictions {
            c.add(truth, class, m);
        }
        c
    };
    let (with, without) = (counts(drop_margin), counts(0));
    MarginChoice {
        drop_margin,
        max_benign_drop,
        benign_drop_rate: with.benign_drop_rate(),
        attack_drop_rate: with.attack_drop_rate(),
        benign_drop_rate_without: without.benign_drop_rate(),
        attack_drop_rate_without: without.attack_drop_rate(),
        rows: raw.len(),
    }
}

/// A target fraction of benign rows dropped, in [0, 1).
pub fn check_max_benign_drop(rate: f64) -> Result<f64, String> {
    if (0.0..1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "{rate}: the largest fraction of benign rows to drop must be at least 0 and below 1"
        ))
    }
}
