//! The training pipeline as one call: split -> standardize -> train (CPU or GPU) -> quantize ->
//! score. `npk train`, `npk eval` and the demo are edges over it.

use std::borrow::Cow;

use npk_common::{
    model::FeatureSchema,
    packet::{FEATURE_NAMES, INGRESS_FEATURES, SCHEMA},
};

use crate::{
    dataset::{Dataset, DatasetError, Standardizer},
    metrics::Confusion,
    model_file::ModelFile,
    packets::augment::with_rate_jitter,
    packets::features::packet_standardizer,
    quantize::{
        IntScratch, QuantizeError, Quantized,
        margin::{DropCounts, MarginChoice, choose_drop_margin},
        quantize,
    },
    train::{self, EpochStats, Mlp, TrainConfig, TrainError, argmax, gpu::GpuTrainError},
};

/// Why a model could not be fitted; each wraps the step's own error.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(transparent)]
    Config(#[from] TrainError),
    #[error(transparent)]
    Split(#[from] DatasetError),
    #[error(transparent)]
    Gpu(#[from] GpuTrainError),
    #[error("quantizing the trained model")]
    Quantize(#[source] QuantizeError),
}

/// Where the float model trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    Cpu,
    // Device 0, through CUDA; fails when there is none.
    Gpu,
}

impl Device {
    /// How summaries name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Gpu => "GPU",
        }
    }
}

/// One run of the pipeline on a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    pub train: TrainConfig,
    /// Fraction of each class held out for testing, in (0, 1).
    pub test_fraction: f64,
    pub device: Device,
    /// Choose the model's drop margin for at most this fraction of benign rows dropped (see
    /// [`crate::quantize::margin`]); `None` keeps margin 0 (every win of a drop class drops).
    pub max_benign_drop: Option<f64>,
}

/// Where the drop margin is chosen: for at most `max_benign_drop` of the benign rows of
/// `validation` dropped, or of the test split when there is no validation set.
#[derive(Clone, Copy, Debug)]
pub struct MarginPolicy<'a> {
    pub max_benign_drop: f64,
    pub validation: Option<&'a Dataset>,
}

/// A float model, trained and scored on the held-out split; not quantized.
#[derive(Clone, Debug)]
pub struct FloatFitted {
    pub mlp: Mlp,
    pub standardizer: Standardizer,
    pub train_rows: usize,
    pub test_rows: usize,
    /// On the standardized test split.
    pub float_accuracy: f64,
}

/// A model for the kernel: the float model, its int8 version and both scored on the held-out
/// split.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub mlp: Mlp,
    pub standardizer: Standardizer,
    pub quantized: Quantized,
    pub feature_names: Vec<String>,
    pub train_rows: usize,
    /// On the test split, at the chosen drop margin.
    pub scores: Scores,
    /// The drop margin chosen, when a [`MarginPolicy`] asked for one.
    pub margin: Option<MarginChoice>,
}

impl Fitted {
    pub fn into_model_file(self) -> ModelFile {
        ModelFile::new(
            self.mlp,
            self.standardizer,
            self.quantized,
            self.feature_names,
        )
    }
}

/// Both models scored on one labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub samples: usize,
    /// The float model on standardized rows.
    pub float_accuracy: f64,
    /// The integer model (the kernel's arithmetic) on raw rows.
    pub quantized_accuracy: f64,
    /// Fraction of rows where both models predict the same class.
    pub agreement: f64,
    pub float: Confusion,
    pub quantized: Confusion,
    /// What the kernel would drop at the integer model's drop margin.
    pub drops: DropCounts,
}

/// Packet features (a CSV from `npk features`/`npk capture`/`npk gen`, recognized by its header)
/// make a model for the kernel classifier (their first [`INGRESS_FEATURES`] alone a v5 model,
/// for kernels where npk cannot count replies); any other columns a tabular model.
pub fn schema_of(feature_names: &[String]) -> FeatureSchema {
    if feature_names == FEATURE_NAMES {
        SCHEMA
    } else if *feature_names == FEATURE_NAMES[..INGRESS_FEATURES] {
        FeatureSchema::PacketV5
    } else {
        FeatureSchema::Tabular
    }
}

/// The standardization `schema` calls for, fitted on the raw training rows.
pub fn standardizer_for(schema: FeatureSchema, train_raw: &Dataset) -> Standardizer {
    match schema {
        FeatureSchema::Tabular => Standardizer::fit(train_raw),
        _ => packet_standardizer(train_raw),
    }
}

/// A quantized model from `data` (for the kernel when it fits): the limits are checked first (a split error
/// must not hide them; [`fit_split`] repeats the few comparisons), then [`fit_split`] on the
/// per-class split.
pub fn fit(
    data: &Dataset,
    test: Option<&Dataset>,
    validation: Option<&Dataset>,
    config: &FitConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<Fitted, FitError> {
    config
        .train
        .check_quantizable(data.num_features, data.num_classes)?;
    let (train_raw, test_raw) = train_and_test(data, test, config)?;
    let margin = config.max_benign_drop.map(|max_benign_drop| MarginPolicy {
        max_benign_drop,
        validation,
    });
    fit_split(
        &train_raw,
        &test_raw,
        &config.train,
        Augment::RateJitter,
        config.device,
        margin,
        on_epoch,
    )
}

/// A float model from `data`, of any width and depth: split, standardized, trained and scored
/// on the test split; nothing is quantized.
pub fn fit_float(
    data: &Dataset,
    test: Option<&Dataset>,
    config: &FitConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<FloatFitted, FitError> {
    config.train.validate(data.num_features, data.num_classes)?;
    let (train_raw, test_raw) = train_and_test(data, test, config)?;
    let (standardizer, mlp) = train_on(&train_raw, &config.train, config.device, on_epoch)?;
    let float_accuracy = mlp.accuracy(&standardizer.apply(&test_raw));
    Ok(FloatFitted {
        mlp,
        standardizer,
        train_rows: train_raw.len(),
        test_rows: test_raw.len(),
        float_accuracy,
    })
}

/// The training and test rows: all of `data` and `test` when there is a test set of its own
/// (MNIST's t10k), else the per-class split of `data` by the config's test fraction.
fn train_and_test<'a>(
    data: &'a Dataset,
    test: Option<&'a Dataset>,
    config: &FitConfig,
) -> Result<(Cow<'a, Dataset>, Cow<'a, Dataset>), FitError> {
    Ok(match test {
        Some(test) => (Cow::Borrowed(data), Cow::Borrowed(test)),
        None => {
            let (train, test) = data.split(config.test_fraction, config.train.seed)?;
            (Cow::Owned(train), Cow::Owned(test))
        }
    })
}

/// What training rows get before the fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Augment {
    /// The rows as they are.
    None,
    /// Packet rows: one copy at other speeds and burstiness each (see
    /// [`crate::packets::augment`]); tabular rows are left as they are.
    RateJitter,
}

/// A model for the kernel from a split made by the caller (the demo balances its scenarios):
/// standardized by the schema of the columns, trained, quantized (calibrated on the raw
/// training rows), its drop margin chosen when `margin` asks, and scored on `test_raw`.
pub fn fit_split(
    train_raw: &Dataset,
    test_raw: &Dataset,
    config: &TrainConfig,
    augment: Augment,
    device: Device,
    margin: Option<MarginPolicy<'_>>,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<Fitted, FitError> {
    config.check_quantizable(train_raw.num_features, train_raw.num_classes)?;
    // Packet rows train with a copy at other speeds (see packets::augment); the standardization
    // and the int8 calibration cover those too.
    let schema = schema_of(&train_raw.feature_names);
    let jittered;
    let rows = match (schema, augment) {
        (FeatureSchema::Tabular, _) | (_, Augment::None) => train_raw,
        (_, Augment::RateJitter) => {
            jittered = with_rate_jitter(train_raw, config.seed);
            &jittered
        }
    };
    let (standardizer, mlp) = train_on(rows, config, device, on_epoch)?;
    // Calibrated on the raw training rows: the quantized model folds standardization in.
    let mut quantized = quantize(&mlp, &standardizer, rows, schema).map_err(FitError::Quantize)?;
    let margin = margin.map(|policy| {
        let rows = policy.validation.unwrap_or(test_raw);
        let choice = choose_drop_margin(&quantized, rows, policy.max_benign_drop);
        quantized.model.drop_margin = choice.drop_margin;
        choice
    });
    let scores = score(&mlp, &standardizer, &quantized, test_raw);
    Ok(Fitted {
        mlp,
        standardizer,
        quantized,
        feature_names: train_raw.feature_names.clone(),
        train_rows: train_raw.len(),
        scores,
        margin,
    })
}

/// The standardizer fitted on `train_raw` and the float model trained on its output.
fn train_on(
    train_raw: &Dataset,
    config: &TrainConfig,
    device: Device,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<(Standardizer, Mlp), FitError> {
    let standardizer = standardizer_for(schema_of(&train_raw.feature_names), train_raw);
    let train_set = standardizer.apply(train_raw);
    let mlp = match device {
        Device::Cpu => train::train(&train_set, config, on_epoch)?,
        Device::Gpu => train::gpu::train_gpu(&train_set, config, on_epoch)?,
    };
    Ok((standardizer, mlp))
}

/// Scores `mlp` (after `standardizer`) and `quantized` on the unstandardized rows of `raw`.
///
/// # Panics
/// If a label of `raw` is not below the model's class count (loaders check it).
pub fn score(
    mlp: &Mlp,
    standardizer: &Standardizer,
    quantized: &Quantized,
    raw: &Dataset,
) -> Scores {
    let standardized = standardizer.apply(raw);
    let classes = mlp.num_classes();
    let logits = mlp.forward(&standardized.features, raw.len());
    let mut scratch = IntScratch::default();
    let mut float = Confusion::new(classes);
    let mut quant = Confusion::new(classes);
    let mut drops = DropCounts::new(classes, quantized.model.drop_margin);
    let mut agree = 0;
    for (i, row_logits) in logits.chunks_exact(classes).enumerate() {
        let label = raw.labels[i] as usize;
        let f = argmax(row_logits);
        let q = quantized.infer(raw.row(i), &mut scratch);
        let q_class = q.class as usize;
        float.add(label, f);
        quant.add(label, q_class);
        drops.add(label, q_class, q.margin);
        agree += usize::from(f == q_class);
    }
    Scores {
        samples: raw.len(),
        float_accuracy: float.accuracy(),
        quantized_accuracy: quant.accuracy(),
        agreement: agree as f64 / raw.len().max(1) as f64,
        float,
        quantized: quant,
        drops,
    }
}
