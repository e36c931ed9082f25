//! `npk inspect`: what a model file holds and what the kernel will run.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use npk_common::model::{FeatureSchema, Model};
use serde::Serialize;

use crate::{
    model_file::{ModelFile, Origin},
    outln,
    output::ConsoleError,
};

/// Show a model file: layers, shapes, scales, requantization, parameter and MAC counts.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The .npk model file.
    pub model: PathBuf,
    /// Print one JSON object (on one line) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Smallest and largest of a per-neuron quantity.
#[derive(Debug, Serialize)]
struct Range<T> {
    pub min: T,
    pub max: T,
}

impl<T: Copy + PartialOrd> Range<T> {
    fn of(values: impl IntoIterator<Item = T>) -> Option<Self> {
        values.into_iter().fold(None, |r, v| match r {
            None => Some(Range { min: v, max: v }),
            Some(Range { min, max }) => Some(Range {
                min: if v < min { v } else { min },
                max: if v > max { v } else { max },
            }),
        })
    }
}

#[derive(Debug, Serialize)]
struct InputReport {
    pub name: String,
    /// Raw value = round(x * 2^frac_bits).
    pub frac_bits: u8,
    /// Raw offset subtracted before requantization (the mean, in raw units).
    pub offset: i32,
    /// Real requantization multiplier (`multiplier * 2^-shift`).
    pub multiplier: f64,
    pub shift: i32,
    /// Standardized units per input code.
    pub scale: f64,
    /// Unstandardized (feature) units per input code.
    pub raw_scale: f64,
}

#[derive(Debug, Serialize)]
struct LayerReport {
    pub index: usize,
    pub in_dim: usize,
    pub out_dim: usize,
    /// `relu` for hidden layers, `none` for the logits.
    pub activation: &'static str,
    pub output_zero_point: i32,
    pub clamp: [i32; 2],
    /// Float weights + biases.
    pub params: u64,
    pub macs: u64,
    /// Real value of one weight code per output row (the layer's input scales folded in).
    pub weight_scale: Range<f64>,
    /// Real value of one output code.
    pub output_scale: Range<f64>,
    /// Real requantization multipliers (`multiplier * 2^-shift`).
    pub multiplier: Range<f64>,
    pub shift: Range<i32>,
}

/// Where the float model came from.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum OriginReport {
    /// `npk train`.
    Trained,
    /// `npk import`: the ONNX file's name and the producer it names.
    ImportedOnnx {
        file: String,
        producer: String,
        producer_version: String,
    },
}

#[derive(Debug, Serialize)]
struct Report {
    pub file: String,
    pub format_version: u32,
    pub npk_version: String,
    pub created_unix_secs: u64,
    pub origin: OriginReport,
    pub feature_schema: &'static str,
    /// The version the kernel model is tagged with (1 until a push bumps it); `null` for a
    /// model the kernel cannot hold.
    pub model_version: Option<u32>,
    /// A drop class drops a packet only when its int8 logit leads by at least this much.
    pub drop_margin: u32,
    pub num_inputs: usize,
    pub num_classes: usize,
    pub inputs: Vec<InputReport>,
    pub layers: Vec<LayerReport>,
    /// Real value of one logit unit.
    pub logit_scale: f64,
    /// Quantile of |z| each input's range was clipped at (1 = the max).
    pub input_clip_quantile: f64,
    /// Fraction of calibration rows where the integer and float models agree.
    pub calibration_agreement: f64,
    pub params: u64,
    pub macs: u64,
    /// Size of the model block in the kernel's BPF map; `null` when the kernel cannot hold
    /// the model (`kernel_limit` says why).
    pub kernel_bytes: Option<usize>,
    /// The kernel limit the model breaks (`npk attach` and `push` refuse it); `null` when it
    /// fits.
    pub kernel_limit: Option<String>,
}

impl Report {
    fn new(file: String, format_version: u32, m: &ModelFile) -> Self {
        let q = &m.quantized;
        let model = &q.model;
        let kernel = m.kernel_model();
        let inputs = (0..model.num_inputs())
            .map(|j| InputReport {
                name: m.feature_names[j].clone(),
                frac_bits: q.encoding.frac_bits[j],
                offset: model.input.offset[j],
                multiplier: real_multiplier(model.input.multiplier[j], model.input.shift[j]),
                shift: model.input.shift[j],
                scale: q.scales.input[j],
                raw_scale: q.scales.input[j] * f64::from(m.standardizer.std[j]),
            })
            .collect();
        let n_layers = model.layers.len();
        let layers = model
            .layers
            .iter()
            .zip(&q.scales.layers)
            .enumerate()
            .map(|(l, (p, s))| {
                let live = 0..p.out_dim;
                LayerReport {
                    index: l,
                    in_dim: p.in_dim,
                    out_dim: p.out_dim,
                    activation: if l + 1 < n_layers { "relu" } else { "none" },
                    output_zero_point: p.activation.zero_point,
                    clamp: [p.activation.min, p.activation.max],
                    params: ((p.in_dim + 1) * p.out_dim) as u64,
                    macs: (p.in_dim * p.out_dim) as u64,
                    weight_scale: range(s.acc.iter().copied()),
                    output_scale: range(s.output.iter().copied()),
                    multiplier: range(
                        live.clone()
                            .map(|o| real_multiplier(p.multiplier[o], p.shift[o])),
                    ),
                    shift: Range::of(live.map(|o| p.shift[o])).unwrap_or(Range { min: 0, max: 0 }),
                }
            })
            .collect::<Vec<_>>();
        Report {
            file,
            format_version,
            npk_version: m.provenance.npk_version.clone(),
            created_unix_secs: m.provenance.created_unix_secs,
            origin: match &m.provenance.origin {
                Origin::Trained => OriginReport::Trained,
                Origin::ImportedOnnx {
                    file,
                    producer,
                    producer_version,
                } => OriginReport::ImportedOnnx {
                    file: file.clone(),
                    producer: producer.clone(),
                    producer_version: producer_version.clone(),
                },
            },
            feature_schema: match model.schema {
                FeatureSchema::Tabular => "tabular",
                FeatureSchema::PacketV1 => "packet-v1",
                FeatureSchema::PacketV2 => "packet-v2",
                FeatureSchema::PacketV3 => "packet-v3",
                FeatureSchema::PacketV4 => "packet-v4",
                FeatureSchema::PacketV5 => "packet-v5",
                FeatureSchema::PacketV6 => "packet-v6",
            },
            model_version: kernel.as_ref().ok().map(|k| k.header.model_version),
            drop_margin: model.drop_margin,
            num_inputs: model.num_inputs(),
            num_classes: model.num_classes(),
            inputs,
            params: layers.iter().map(|l| l.params).sum(),
            layers,
            logit_scale: q.scales.logit(),
            input_clip_quantile: q.calibration.input_clip,
            calibration_agreement: q.calibration.agreement,
            macs: model.macs(),
            kernel_bytes: kernel.as_ref().ok().map(|_| size_of::<Model>()),
            kernel_limit: kernel.err().map(|e| e.limit.to_string()),
        }
    }

    fn print_text(&self) -> Result<(), ConsoleError> {
        outln!(
            "{}: npk model file v{}, written by npk {} at unix time {}",
            self.file,
            self.format_version,
            self.npk_version,
            self.created_unix_secs
        )?;
        match &self.origin {
            OriginReport::Trained => outln!("origin: trained by npk")?,
            OriginReport::ImportedOnnx {
                file,
                producer,
                producer_version,
            } => outln!(
                "origin: imported from ONNX file {file:?}, produced by {producer:?} version \
                 {producer_version:?}"
            )?,
        }
        let version = match self.model_version {
            Some(v) => format!(", model version {v}"),
            None => String::new(),
        };
        outln!(
            "feature schema {}, {} inputs, {} classes{version}",
            self.feature_schema,
            self.num_inputs,
            self.num_classes,
        )?;
        outln!(
            "drop margin {} logit codes ({:.4} in float logits): a drop class drops only with \
             at least that lead over the runner-up",
            self.drop_margin,
            f64::from(self.drop_margin) * self.logit_scale
        )?;
        outln!(
            "inputs: code = clamp(round((raw - offset) * multiplier), -127, 127), raw = round(x * 2^frac)"
        )?;
        outln!(
            "  {:>3}  {:<24} {:>4} {:>12} {:>11} {:>5} {:>11} {:>11}",
            "#",
            "name",
            "frac",
            "offset",
            "multiplier",
            "shift",
            "z/code",
            "x/code"
        )?;
        for (j, i) in self.inputs.iter().enumerate() {
            outln!(
                "  {j:>3}  {:<24} {:>4} {:>12} {:>11.4e} {:>5} {:>11.4e} {:>11.4e}",
                i.name,
                i.frac_bits,
                i.offset,
                i.multiplier,
                i.shift,
                i.scale,
                i.raw_scale
            )?;
        }
        outln!("layers: out = clamp(requantize(bias + W x, multiplier, shift) + zero point)")?;
        outln!(
            "  {:>3}  {:>10} {:>5} {:>6} {:>6} {:>21} {:>21} {:>21} {:>5} {:>4} {:>13}",
            "#",
            "shape",
            "act",
            "params",
            "MACs",
            "weight scale",
            "output scale",
            "multiplier",
            "shift",
            "zp",
            "clamp"
        )?;
        for l in &self.layers {
            outln!(
                "  {:>3}  {:>10} {:>5} {:>6} {:>6} {:>21} {:>21} {:>21} {:>5} {:>4} {:>13}",
                l.index,
                format!("{}x{}", l.out_dim, l.in_dim),
                l.activation,
                l.params,
                l.macs,
                format!("{:.3e}..{:.3e}", l.weight_scale.min, l.weight_scale.max),
                format!("{:.3e}..{:.3e}", l.output_scale.min, l.output_scale.max),
                format!("{:.3e}..{:.3e}", l.multiplier.min, l.multiplier.max),
                format!("{}..{}", l.shift.min, l.shift.max),
                l.output_zero_point,
                format!("{}..{}", l.clamp[0], l.clamp[1]),
            )?;
        }
        outln!("logit scale {:.4e} per unit", self.logit_scale)?;
        outln!(
            "calibration: inputs clipped at quantile {} of |z|, integer/float agreement {:.4}",
            self.input_clip_quantile,
            self.calibration_agreement
        )?;
        let kernel = match (self.kernel_bytes, &self.kernel_limit) {
            (Some(bytes), _) => format!("{bytes} bytes in the kernel"),
            (None, Some(limit)) => format!("too large for the kernel: {limit}"),
            (None, None) => "not for the kernel".to_string(),
        };
        outln!(
            "{} parameters, {} MACs per inference, {kernel}",
            self.params,
            self.macs,
        )?;
        Ok(())
    }
}

fn range(values: impl IntoIterator<Item = f64>) -> Range<f64> {
    Range::of(values).unwrap_or(Range { min: 0.0, max: 0.0 })
}

fn real_multiplier(multiplier: i32, shift: i32) -> f64 {
    f64::from(multiplier) * (-f64::from(shift)).exp2()
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let (file, version) =
        ModelFile::load_versioned(&args.model).context("cannot inspect the model")?;
    let report = Report::new(args.model.display().to_string(), version, &file);
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&report).context("encoding the report as JSON")?
        )?;
    } else {
        report.print_text()?;
    }
    Ok(())
}
