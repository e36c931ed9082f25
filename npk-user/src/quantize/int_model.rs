//! The int8 model as userspace holds it: any width up to [`USER_MAX_WIDTH`], plain `[out][in]`
//! weights. It runs through the slice functions of [`npk_common::infer`] (the arithmetic the
//! kernel runs, proven equal there); [`IntModel::kernel_model`] packs it into the kernel's
//! fixed [`Model`] when it fits, the one place that decides whether it does.

use npk_common::infer::{
    Activation, DENSE_MAX_INPUTS, DenseSlices, Prediction, dense_layer, predict_logits,
    quantize_feature,
};
use npk_common::model::{
    BIAS_LIMIT, FeatureSchema, LimitError, MAX_CLASSES, MAX_DROP_MARGIN, MAX_LAYERS, MAX_SHIFT,
    Model, ModelError,
};

/// Widest layer (inputs included) that npk trains for quantization, quantizes and runs in
/// userspace: 32x the kernel's MAX_WIDTH, far below the `2^16` inputs that keep the int8 dot
/// product exact in i32 ([`DENSE_MAX_INPUTS`]).
pub const USER_MAX_WIDTH: usize = 4096;
const _: () = assert!(USER_MAX_WIDTH <= DENSE_MAX_INPUTS);
/// Most weights of a quantized model: with its float twin, 5 bytes each in a model file, which
/// this keeps below the file cap ([`crate::model_file::MAX_FILE_LEN`]). 1,024 inputs and three
/// hidden layers of 2,048 are 10.5 million.
pub const USER_MAX_WEIGHTS: usize = 1 << 24;

/// A network shape npk cannot quantize and run in userspace. Depth and classes are the
/// kernel's limits (the file format and the label reader share them); widths are userspace's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error(transparent)]
    Kernel(LimitError),
    #[error("{0} input features: must be 1..={USER_MAX_WIDTH} (the widest layer npk quantizes)")]
    Inputs(usize),
    #[error(
        "hidden layer {layer} has width {width}: must be 1..={USER_MAX_WIDTH} (the widest layer \
         npk quantizes)"
    )]
    Width { layer: usize, width: usize },
    #[error("{0} weights: at most {USER_MAX_WEIGHTS} (what a model file holds)")]
    Weights(usize),
}

/// Checks an MLP of `inputs` features, `hidden` layers and `classes` outputs against what npk
/// quantizes: any shape the kernel holds, and wider ones up to [`USER_MAX_WIDTH`].
pub fn check_user_limits(
    inputs: usize,
    hidden: &[usize],
    classes: usize,
) -> Result<(), ShapeError> {
    if hidden.len() > MAX_LAYERS - 1 {
        return Err(ShapeError::Kernel(LimitError::HiddenLayers(hidden.len())));
    }
    if !(1..=USER_MAX_WIDTH).contains(&inputs) {
        return Err(ShapeError::Inputs(inputs));
    }
    if let Some((i, &width)) = hidden
        .iter()
        .enumerate()
        .find(|&(_, &w)| !(1..=USER_MAX_WIDTH).contains(&w))
    {
        return Err(ShapeError::Width {
            layer: i + 1,
            width,
        });
    }
    if !(2..=MAX_CLASSES).contains(&classes) {
        return Err(ShapeError::Kernel(LimitError::Classes(classes)));
    }
    let widths: Vec<usize> = [inputs]
        .into_iter()
        .chain(hidden.iter().copied())
        .chain([classes])
        .collect();
    let weights: usize = widths.windows(2).map(|w| w[0] * w[1]).sum();
    if weights > USER_MAX_WEIGHTS {
        return Err(ShapeError::Weights(weights));
    }
    Ok(())
}

/// A model the kernel cannot hold: its shape and the kernel limit it breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the model is {shape}, which the kernel cannot hold: {limit} (it trains, quantizes and \
     evaluates in userspace: `npk eval`)"
)]
pub struct KernelFitError {
    /// Layer widths, inputs first: `784-256-128-10`.
    pub shape: String,
    pub limit: LimitError,
}

/// Why an [`IntModel`] cannot be used. Layers and neurons count from 0; layer 0's neurons of
/// a shift error are the input features.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntModelError {
    #[error(transparent)]
    Shape(ShapeError),
    #[error("{what} holds {found} values, expected {expected}")]
    Length {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("drop margin {0}: must be 0..={MAX_DROP_MARGIN} (no two logits are further apart)")]
    DropMargin(u32),
    #[error("layer {layer} neuron {neuron}: shift {shift} outside 1..={MAX_SHIFT}")]
    Shift {
        layer: usize,
        neuron: usize,
        shift: i32,
    },
    #[error("layer {layer} neuron {neuron}: |bias| >= 2^30")]
    Bias { layer: usize, neuron: usize },
    #[error("layer {layer}: activation clamp is inverted")]
    Clamp { layer: usize },
}

/// The input quantizer: raw feature `j` becomes
/// [`quantize_feature`]`(raw, offset[j], multiplier[j], shift[j])`.
///
/// # Shapes
/// Every vector has one entry per input feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntInput {
    pub offset: Vec<i32>,
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
}

/// One dense layer (see [`npk_common::model::LayerParams`] for the formula).
///
/// # Shapes
/// `weights`: `out_dim x in_dim` row-major; `bias`, `multiplier`, `shift`: `out_dim`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntLayer {
    pub in_dim: usize,
    pub out_dim: usize,
    pub weights: Vec<i8>,
    pub bias: Vec<i32>,
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
    pub activation: Activation,
}

impl IntLayer {
    /// A zero layer of the given shape: weights, scales and activation are the caller's.
    fn zeros(in_dim: usize, out_dim: usize) -> Self {
        Self {
            in_dim,
            out_dim,
            weights: vec![0; in_dim * out_dim],
            bias: vec![0; out_dim],
            multiplier: vec![0; out_dim],
            shift: vec![0; out_dim],
            activation: Activation {
                zero_point: 0,
                min: 0,
                max: 0,
            },
        }
    }

    /// Weight `[o][i]` (0 outside the layer).
    pub fn weight(&self, o: usize, i: usize) -> i8 {
        if i >= self.in_dim {
            return 0;
        }
        self.weights.get(o * self.in_dim + i).copied().unwrap_or(0)
    }

    fn slices(&self) -> DenseSlices<'_> {
        DenseSlices {
            in_dim: self.in_dim,
            weights: &self.weights,
            bias: &self.bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
            activation: self.activation,
        }
    }
}

/// The quantized MLP, of any width npk quantizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntModel {
    pub schema: FeatureSchema,
    /// See [`npk_common::model::ModelHeader::drop_margin`].
    pub drop_margin: u32,
    pub input: IntInput,
    pub layers: Vec<IntLayer>,
}

/// Working memory of [`IntModel::predict`], reused across rows.
#[derive(Clone, Debug, Default)]
pub struct IntScratch {
    /// Raw integer features, as the input quantizer reads them.
    pub features: Vec<i32>,
    act: [Vec<i32>; 2],
}

impl IntScratch {
    /// The logits the last [`IntModel::predict`] left.
    pub fn logits(&self, model: &IntModel) -> &[i32] {
        &self.act[model.layers.len() & 1]
    }
}

impl IntModel {
    /// A zero model of `schema` shaped `inputs -> hidden... -> classes` once the shape passes
    /// [`check_user_limits`]; weights, scales and activations are the caller's to fill.
    pub fn shaped(
        schema: FeatureSchema,
        inputs: usize,
        hidden: &[usize],
        classes: usize,
    ) -> Result<Self, ShapeError> {
        check_user_limits(inputs, hidden, classes)?;
        let widths: Vec<usize> = [inputs]
            .into_iter()
            .chain(hidden.iter().copied())
            .chain([classes])
            .collect();
        Ok(Self {
            schema,
            drop_margin: 0,
            input: IntInput {
                offset: vec![0; inputs],
                multiplier: vec![0; inputs],
                shift: vec![0; inputs],
            },
            layers: widths
                .windows(2)
                .map(|w| IntLayer::zeros(w[0], w[1]))
                .collect(),
        })
    }

    pub fn num_inputs(&self) -> usize {
        self.input.offset.len()
    }

    pub fn num_classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.out_dim)
    }

    /// Hidden layer widths, input side first.
    pub fn hidden(&self) -> Vec<usize> {
        let n = self.layers.len().saturating_sub(1);
        self.layers[..n].iter().map(|l| l.out_dim).collect()
    }

    /// Layer widths, inputs first: `784-256-128-10`.
    pub fn shape(&self) -> String {
        let widths: Vec<String> = [self.num_inputs()]
            .into_iter()
            .chain(self.layers.iter().map(|l| l.out_dim))
            .map(|w| w.to_string())
            .collect();
        widths.join("-")
    }

    /// Multiply-accumulates per inference.
    pub fn macs(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| (l.in_dim * l.out_dim) as u64)
            .sum()
    }

    /// Checks every invariant [`Self::predict`] relies on for its result to mean what the
    /// kernel's would: the shape, lengths, shifts, biases and clamps.
    pub fn validate(&self) -> Result<(), IntModelError> {
        check_user_limits(self.num_inputs(), &self.hidden(), self.num_classes())
            .map_err(IntModelError::Shape)?;
        let length = |what: String, expected: usize, found: usize| {
            if found == expected {
                Ok(())
            } else {
                Err(IntModelError::Length {
                    what,
                    expected,
                    found,
                })
            }
        };
        let n = self.num_inputs();
        length("input multipliers".into(), n, self.input.multiplier.len())?;
        length("input shifts".into(), n, self.input.shift.len())?;
        if self.drop_margin > MAX_DROP_MARGIN {
            return Err(IntModelError::DropMargin(self.drop_margin));
        }
        if let Some((neuron, &shift)) = self
            .input
            .shift
            .iter()
            .enumerate()
            .find(|&(_, s)| !(1..=MAX_SHIFT).contains(s))
        {
            return Err(IntModelError::Shift {
                layer: 0,
                neuron,
                shift,
            });
        }
        let mut width = n;
        for (layer, l) in self.layers.iter().enumerate() {
            length(format!("layer {layer} input width"), width, l.in_dim)?;
            length(
                format!("layer {layer} weights"),
                l.in_dim * l.out_dim,
                l.weights.len(),
            )?;
            for (what, values) in [
                ("biases", &l.bias),
                ("multipliers", &l.multiplier),
                ("shifts", &l.shift),
            ] {
                length(format!("layer {layer} {what}"), l.out_dim, values.len())?;
            }
            if l.activation.min > l.activation.max {
                return Err(IntModelError::Clamp { layer });
            }
            for neuron in 0..l.out_dim {
                let shift = l.shift[neuron];
                if !(1..=MAX_SHIFT).contains(&shift) {
                    return Err(IntModelError::Shift {
                        layer,
                        neuron,
                        shift,
                    });
                }
                if l.bias[neuron].unsigned_abs() >= BIAS_LIMIT as u32 {
                    return Err(IntModelError::Bias { layer, neuron });
                }
            }
            width = l.out_dim;
        }
        Ok(())
    }

    /// Runs the model on `scratch.features` (raw integer features, [`Self::num_inputs`] of
    /// them); the logits stay in `scratch` ([`IntScratch::logits`]).
    pub fn predict(&self, scratch: &mut IntScratch) -> Prediction {
        let IntScratch { features, act } = scratch;
        let [a, b] = act;
        let q = &self.input;
        a.clear();
        a.extend(
            features
                .iter()
                .zip(&q.offset)
                .zip(&q.multiplier)
                .zip(&q.shift)
                .map(|(((&raw, &o), &m), &s)| quantize_feature(raw, o, m, s)),
        );
        for (l, layer) in self.layers.iter().enumerate() {
            let (input, output) = if l & 1 == 0 {
                (&*a, &mut *b)
            } else {
                (&*b, &mut *a)
            };
            output.clear();
            output.resize(layer.out_dim, 0);
            dense_layer(&layer.slices(), input, output);
        }
        predict_logits(scratch.logits(self))
    }

    /// The kernel's [`Model`] of this model, or the kernel limit it breaks: the one check of
    /// whether a model can be attached, pushed or served by the kernel.
    pub fn kernel_model(&self) -> Result<Box<Model>, KernelFitError> {
        let mut model: Box<Model> = bytemuck::zeroed_box();
        let classes = self.num_classes();
        model
            .set_shape(self.schema, self.num_inputs(), &self.hidden(), classes)
            .map_err(|limit| KernelFitError {
                shape: self.shape(),
                limit,
            })?;
        model.header.drop_margin = self.drop_margin;
        // Zipped copies: a model that skipped validation packs wrong but never panics.
        let q = &self.input;
        let k = &mut model.input;
        for (dst, src) in [
            (&mut k.offset, &q.offset),
            (&mut k.multiplier, &q.multiplier),
            (&mut k.shift, &q.shift),
        ] {
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
        }
        for (p, l) in model.layers.iter_mut().zip(&self.layers) {
            (p.output_zero_point, p.act_min, p.act_max) =
                (l.activation.zero_point, l.activation.min, l.activation.max);
            for (dst, src) in [
                (&mut p.bias, &l.bias),
                (&mut p.multiplier, &l.multiplier),
                (&mut p.shift, &l.shift),
            ] {
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
            }
            for (o, row) in l.weights.chunks_exact(l.in_dim.max(1)).enumerate() {
                for (i, &w) in row.iter().enumerate() {
                    p.set_weight(o, i, w);
                }
            }
        }
        Ok(model)
    }

    /// The userspace form of a kernel model (that passed [`Model::validate`]): how files
    /// written before wide models load.
    pub fn from_kernel(model: &Model) -> Result<Self, ModelError> {
        model.validate()?;
        let h = &model.header;
        let n = h.num_inputs as usize;
        let q = &model.input;
        let schema = FeatureSchema::from_u32(h.feature_schema)
            .ok_or(ModelError::BadSchema(h.feature_schema))?;
        Ok(Self {
            schema,
            drop_margin: h.drop_margin,
            input: IntInput {
                offset: q.offset[..n].to_vec(),
                multiplier: q.multiplier[..n].to_vec(),
                shift: q.shift[..n].to_vec(),
            },
            layers: model
                .active_layers()
                .iter()
                .map(|p| {
                    let (in_dim, out_dim) = (p.in_dim as usize, p.out_dim as usize);
                    IntLayer {
                        in_dim,
                        out_dim,
                        weights: (0..in_dim * out_dim)
                            .map(|k| p.weight(k / in_dim, k % in_dim))
                            .collect(),
                        bias: p.bias[..out_dim].to_vec(),
                        multiplier: p.multiplier[..out_dim].to_vec(),
                        shift: p.shift[..out_dim].to_vec(),
                        activation: Activation {
                            zero_point: p.output_zero_point,
                            min: p.act_min,
                            max: p.act_max,
                        },
                    }
                })
                .collect(),
        })
    }
}
