//! The `.npk` model file: float model, input normalization and quantized model, versioned and
//! checksummed. The layout is specified in docs/model-format.md.

mod codec;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use npk_common::infer::Activation;
use npk_common::model::{FeatureSchema, MAX_LAYERS, Model, ModelError};

use crate::dataset::Standardizer;
use crate::output::{OutputErrorKind, OutputPath};
use crate::quantize::{
    CalibrationInfo, InputEncoding, IntInput, IntLayer, IntModel, IntModelError, LayerScales,
    MAX_FRAC_BITS, Quantized, Scales, USER_MAX_WIDTH,
};
use crate::train::{Dense, Mlp};
use codec::{Reader, Writer};

/// The first four bytes of every model file.
pub const FILE_MAGIC: [u8; 4] = *b"NPKF";
/// Bumped whenever the payload layout changes; [`ModelFile::save`] writes this version (4: the
/// quantized model as plain int8 layers of any width npk quantizes, after a flag saying whether
/// the kernel can hold it; versions 2 and 3 hold the kernel's `Model` block).
pub const FILE_FORMAT_VERSION: u32 = 4;
/// The last version that stores the quantized model as the kernel's `Model` block.
const KERNEL_BLOCK_VERSION: u32 = 3;
/// The oldest version [`ModelFile::load`] reads: version 2 has no origin (its models were all
/// trained by npk).
pub const OLDEST_FORMAT_VERSION: u32 = 2;
/// Magic, format version, payload length (u64), CRC32 of the payload.
pub const HEADER_LEN: usize = 4 + 4 + 8 + 4;
/// Longest feature name, in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 1024;
/// Kernel model files are ~300 KB, the widest userspace ones below 5 x
/// [`crate::quantize::USER_MAX_WEIGHTS`] = 80 MiB; anything larger is not one, and is not read
/// into memory.
pub const MAX_FILE_LEN: u64 = 128 << 20;

// The quantized `Model` is stored as its in-memory bytes, which are little-endian only on
// little-endian hosts (every target npk builds for: x86_64, aarch64, bpfel).
const _: () = assert!(
    cfg!(target_endian = "little"),
    "the model file stores the Model block little-endian"
);

/// Who wrote a model file, when, and where its float model came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub created_unix_secs: u64,
    /// The `npk` version that wrote the file.
    pub npk_version: String,
    pub origin: Origin,
}

/// Where the float model came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `npk train`.
    Trained,
    /// `npk import` of an ONNX file: its file name and the producer the file names.
    ImportedOnnx {
        file: String,
        producer: String,
        producer_version: String,
    },
}

impl Origin {
    /// The kind's code in the file.
    fn code(&self) -> u32 {
        match self {
            Self::Trained => 0,
            Self::ImportedOnnx { .. } => 1,
        }
    }
}

impl Provenance {
    /// A model trained by this build of npk, now.
    pub fn now() -> Self {
        Self::now_from(Origin::Trained)
    }

    /// A model from `origin`, written by this build of npk now.
    pub fn now_from(origin: Origin) -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            created_unix_secs: secs,
            npk_version: env!("CARGO_PKG_VERSION").to_string(),
            origin,
        }
    }
}

/// Everything `npk` keeps about a trained model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFile {
    /// The float model, reading standardized features.
    pub mlp: Mlp,
    pub standardizer: Standardizer,
    /// The integer model for the kernel, with its input encoding and scales.
    pub quantized: Quantized,
    /// One per input feature.
    pub feature_names: Vec<String>,
    pub provenance: Provenance,
}

/// A model file that cannot be read or written: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct ModelFileError {
    pub path: PathBuf,
    pub kind: ModelFileErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelFileErrorKind {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("cannot write: {0}")]
    Write(OutputErrorKind),
    #[error("is a {0}, not a regular file: a model file is read whole and needs a size")]
    NotAFile(&'static str),
    #[error("the file is empty")]
    Empty,
    #[error("{found} bytes: larger than any model file (limit {MAX_FILE_LEN})")]
    TooLarge { found: u64 },
    #[error("truncated: expected {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("expected {expected} bytes, found {found}: data after the payload")]
    TrailingData { expected: u64, found: u64 },
    #[error("not an npk model file: magic {}, expected \"NPKF\"", found.escape_ascii())]
    BadMagic { found: [u8; 4] },
    #[error(
        "unsupported format version: found {found}, supported {OLDEST_FORMAT_VERSION}..={FILE_FORMAT_VERSION}"
    )]
    UnsupportedVersion { found: u32 },
    #[error("checksum mismatch: stored CRC32 {stored:#010x}, payload has {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("malformed payload at byte {offset}: {what}")]
    Malformed { offset: usize, what: String },
    #[error("inconsistent dims: {0}")]
    Inconsistent(String),
    #[error("bad value: {0}")]
    BadValue(String),
    #[error("the quantized model is invalid: {0}")]
    InvalidModel(IntModelError),
    #[error("the quantized kernel model is invalid: {0}")]
    InvalidKernelModel(ModelError),
}

impl ModelFile {
    /// A model file stamped with this build's version and the current time.
    pub fn new(
        mlp: Mlp,
        standardizer: Standardizer,
        quantized: Quantized,
        feature_names: Vec<String>,
    ) -> Self {
        Self {
            mlp,
            standardizer,
            quantized,
            feature_names,
            provenance: Provenance::now(),
        }
    }

    /// The feature schema of the quantized model.
    pub fn schema(&self) -> FeatureSchema {
        self.quantized.model.schema
    }

    /// The kernel's model of this file, or the kernel limit it breaks (see
    /// [`IntModel::kernel_model`]): what `attach`, `push` and `serve --kernel` load.
    pub fn kernel_model(&self) -> Result<Box<Model>, crate::quantize::KernelFitError> {
        self.quantized.model.kernel_model()
    }

    /// Writes the file to `path` through [`OutputPath`]: atomically for a regular file, in
    /// place for a device or FIFO.
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let out = OutputPath::check(path, &[]).map_err(|e| ModelFileError {
            path: e.path,
            kind: ModelFileErrorKind::Write(e.kind),
        })?;
        self.save_to(&out)
    }

    /// Writes the file to an output checked before the work that made the model.
    pub fn save_to(&self, out: &OutputPath) -> Result<(), ModelFileError> {
        let bytes = self.to_bytes().map_err(|kind| ModelFileError {
            path: out.path().to_owned(),
            kind,
        })?;
        out.write_all(&bytes).map_err(|e| ModelFileError {
            path: e.path,
            kind: ModelFileErrorKind::Write(e.kind),
        })
    }

    /// Reads and checks a model file: header, checksum, payload and the consistency of all
    /// its parts, including [`Model::validate`]. Only a regular file is read (a FIFO or a
    /// device has no size to check), and at most [`MAX_FILE_LEN`] + 1 bytes of it.
    pub fn load(path: &Path) -> Result<ModelFile, ModelFileError> {
        Self::load_versioned(path).map(|(file, _)| file)
    }

    /// [`Self::load`], with the format version the file is written in.
    pub fn load_versioned(path: &Path) -> Result<(ModelFile, u32), ModelFileError> {
        let err = |kind| ModelFileError {
            path: path.to_owned(),
            kind,
        };
        let bytes = read_capped(path).map_err(err)?;
        Self::from_bytes_versioned(&bytes).map_err(err)
    }

    /// The file's bytes; fails if the parts do not fit together.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelFileErrorKind> {
        self.check()?;
        let mut w = Writer::default();
        let q = &self.quantized;
        // Metadata.
        w.u32(q.model.schema as u32);
        w.len(self.feature_names.len());
        for name in &self.feature_names {
            w.bytes(name.as_bytes());
        }
        w.u64(self.provenance.created_unix_secs);
        w.bytes(self.provenance.npk_version.as_bytes());
        let origin = &self.provenance.origin;
        w.u32(origin.code());
        if let Origin::ImportedOnnx {
            file,
            producer,
            producer_version,
        } = origin
        {
            for s in [file, producer, producer_version] {
                w.bytes(s.as_bytes());
            }
        }
        // Float model.
        w.len(self.mlp.layers.len());
        for d in &self.mlp.layers {
            w.len(d.in_dim);
            w.len(d.out_dim);
            w.f32s(&d.weights);
            w.f32s(&d.bias);
        }
        w.f32s(&self.standardizer.mean);
        w.f32s(&self.standardizer.std);
        // Quantization.
        w.bytes(&q.encoding.frac_bits);
        w.f64s(&q.scales.input);
        w.len(q.scales.layers.len());
        for l in &q.scales.layers {
            w.f64s(&l.acc);
            w.f64s(&l.output);
        }
        w.f64(q.calibration.input_clip);
        w.f64(q.calibration.agreement);
        w.u32(u32::from(q.model.kernel_model().is_ok()));
        encode_int_model(&mut w, &q.model);

        let payload = w.buf;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&FILE_MAGIC);
        out.extend_from_slice(&FILE_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parses and checks a whole file image. Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile, ModelFileErrorKind> {
        Self::from_bytes_versioned(bytes).map(|(file, _)| file)
    }

    /// [`Self::from_bytes`], with the format version the image is written in.
    pub fn from_bytes_versioned(bytes: &[u8]) -> Result<(ModelFile, u32), ModelFileErrorKind> {
        use ModelFileErrorKind as E;
        let found = bytes.len() as u64;
        if bytes.is_empty() {
            return Err(E::Empty);
        }
        let Some(&[a, b, c, d]) = bytes.get(..4) else {
            return Err(E::Truncated {
                expected: HEADER_LEN as u64,
                found,
            });
        };
        let magic = [a, b, c, d];
        if magic != FILE_MAGIC {
            return Err(E::BadMagic { found: magic });
        }
        let header = bytes.get(..HEADER_LEN).ok_or(E::Truncated {
            expected: HEADER_LEN as u64,
            found,
        })?;
        let mut h = Reader::new(header);
        h.u32("magic")?;
        let version = h.u32("format version")?;
        if !(OLDEST_FORMAT_VERSION..=FILE_FORMAT_VERSION).contains(&version) {
            return Err(E::UnsupportedVersion { found: version });
        }
        let payload_len = h.u64("payload length")?;
        let stored_crc = h.u32("checksum")?;
        let expected = (HEADER_LEN as u64).saturating_add(payload_len);
        if found < expected {
            return Err(E::Truncated { expected, found });
        }
        if found > expected {
            return Err(E::TrailingData { expected, found });
        }
        let payload = &bytes[HEADER_LEN..];
        let computed = crc32fast::hash(payload);
        if computed != stored_crc {
            return Err(E::Checksum {
                stored: stored_crc,
                computed,
            });
        }
        let file = decode_payload(&mut Reader::new(payload), version)?;
        file.check()?;
        Ok((file, version))
    }

    /// Every part describes the same network: dims chain, lengths match, the quantized model
    /// validates.
    fn check(&self) -> Result<(), ModelFileErrorKind> {
        let bad = |msg: String| Err(ModelFileErrorKind::Inconsistent(msg));
        let layers = &self.mlp.layers;
        if layers.is_empty() || layers.len() > MAX_LAYERS {
            return bad(format!(
                "the float MLP has {} layers: must be 1..={MAX_LAYERS}",
                layers.len()
            ));
        }
        for (l, d) in layers.iter().enumerate() {
            if d.weights.len() != d.in_dim * d.out_dim || d.bias.len() != d.out_dim {
                return bad(format!(
                    "float layer {l} is {}x{} but holds {} weights and {} biases",
                    d.out_dim,
                    d.in_dim,
                    d.weights.len(),
                    d.bias.len()
                ));
            }
            if l > 0 && d.in_dim != layers[l - 1].out_dim {
                return bad(format!(
                    "float layer {l} takes {} inputs but layer {} gives {}",
                    d.in_dim,
                    l - 1,
                    layers[l - 1].out_dim
                ));
            }
        }
        let n_in = layers[0].in_dim;
        let q = &self.quantized;
        let s = &self.standardizer;
        for (what, len) in [
            ("feature names", self.feature_names.len()),
            ("standardizer means", s.mean.len()),
            ("standardizer deviations", s.std.len()),
            ("input encodings", q.encoding.frac_bits.len()),
            ("input scales", q.scales.input.len()),
        ] {
            if len != n_in {
                return bad(format!("{len} {what} for a float MLP of {n_in} inputs"));
            }
        }
        if let Some(j) = self
            .feature_names
            .iter()
            .position(|n| n.len() > MAX_NAME_LEN)
        {
            return Err(ModelFileErrorKind::BadValue(format!(
                "feature {j}: name of {} bytes, at most {MAX_NAME_LEN}",
                self.feature_names[j].len()
            )));
        }
        if let Origin::ImportedOnnx {
            file,
            producer,
            producer_version,
        } = &self.provenance.origin
        {
            for (what, s) in [
                ("source file name", file),
                ("producer", producer),
                ("producer version", producer_version),
            ] {
                if s.len() > MAX_NAME_LEN {
                    return Err(ModelFileErrorKind::BadValue(format!(
                        "origin: {what} of {} bytes, at most {MAX_NAME_LEN}",
                        s.len()
                    )));
                }
            }
        }
        if let Some(j) = q.encoding.frac_bits.iter().position(|&f| f > MAX_FRAC_BITS) {
            return Err(ModelFileErrorKind::BadValue(format!(
                "feature {j}: {} fractional bits, at most {MAX_FRAC_BITS}",
                q.encoding.frac_bits[j]
            )));
        }
        if q.scales.layers.len() != layers.len() {
            return bad(format!(
                "{} layers of scales for {} float layers",
                q.scales.layers.len(),
                layers.len()
            ));
        }
        for (l, (sc, d)) in q.scales.layers.iter().zip(layers).enumerate() {
            if sc.acc.len() != d.out_dim || sc.output.len() != d.out_dim {
                return bad(format!(
                    "layer {l}: {} accumulator and {} output scales for {} outputs",
                    sc.acc.len(),
                    sc.output.len(),
                    d.out_dim
                ));
            }
        }
        let classes = layers[layers.len() - 1].out_dim;
        if (
            q.model.layers.len(),
            q.model.num_inputs(),
            q.model.num_classes(),
        ) != (layers.len(), n_in, classes)
        {
            return bad(format!(
                "the quantized model has {} layers, {} inputs and {} classes; the float MLP {}, {n_in} and {classes}",
                q.model.layers.len(),
                q.model.num_inputs(),
                q.model.num_classes(),
                layers.len()
            ));
        }
        q.model
            .validate()
            .map_err(ModelFileErrorKind::InvalidModel)?;
        for (l, (p, d)) in q.model.layers.iter().zip(layers).enumerate() {
            if (p.in_dim, p.out_dim) != (d.in_dim, d.out_dim) {
                return bad(format!(
                    "layer {l} is {}x{} quantized but {}x{} float",
                    p.out_dim, p.in_dim, d.out_dim, d.in_dim
                ));
            }
        }
        self.check_values()
    }

    /// Every float the format constrains (docs/model-format.md, "Checks on load and save"):
    /// weights, biases and means finite; deviations and scales finite and positive, the output
    /// layer's all one logit scale; the input clip in (0, 1] and the agreement in [0, 1]. Runs
    /// after the dims are checked: the indices below are in range.
    fn check_values(&self) -> Result<(), ModelFileErrorKind> {
        let bad = |what: String| Err(ModelFileErrorKind::BadValue(what));
        let positive = |v: f64| v.is_finite() && v > 0.0;
        for (l, d) in self.mlp.layers.iter().enumerate() {
            if let Some(k) = d.weights.iter().position(|w| !w.is_finite()) {
                return bad(format!(
                    "float layer {l} weight [{}][{}] is {}",
                    k / d.in_dim,
                    k % d.in_dim,
                    d.weights[k]
                ));
            }
            if let Some(o) = d.bias.iter().position(|b| !b.is_finite()) {
                return bad(format!("float layer {l} bias [{o}] is {}", d.bias[o]));
            }
        }
        let s = &self.standardizer;
        if let Some(j) = s.mean.iter().position(|m| !m.is_finite()) {
            return bad(format!("standardizer mean [{j}] is {}", s.mean[j]));
        }
        if let Some(j) = s.std.iter().position(|&v| !positive(f64::from(v))) {
            return bad(format!(
                "standardizer deviation [{j}] is {}: must be finite and positive",
                s.std[j]
            ));
        }
        let scales = &self.quantized.scales;
        if let Some(j) = scales.input.iter().position(|&v| !positive(v)) {
            return bad(format!(
                "input scale [{j}] is {}: must be finite and positive",
                scales.input[j]
            ));
        }
        for (l, layer) in scales.layers.iter().enumerate() {
            for (what, values) in [("accumulator", &layer.acc), ("output", &layer.output)] {
                if let Some(o) = values.iter().position(|&v| !positive(v)) {
                    return bad(format!(
                        "layer {l} {what} scale [{o}] is {}: must be finite and positive",
                        values[o]
                    ));
                }
            }
        }
        let logit = scales.logit();
        if let Some(last) = scales.layers.last()
            && let Some(o) = last.output.iter().position(|&v| v != logit)
        {
            return bad(format!(
                "layer {} output scale [{o}] is {}, but [0] is {logit}: the output layer has one \
                 logit scale",
                scales.layers.len() - 1,
                last.output[o]
            ));
        }
        let c = &self.quantized.calibration;
        if !(c.input_clip > 0.0 && c.input_clip <= 1.0) {
            return bad(format!(
                "input clip quantile {} is outside (0, 1]",
                c.input_clip
            ));
        }
        if !(0.0..=1.0).contains(&c.agreement) {
            return bad(format!(
                "calibration agreement {} is outside [0, 1]",
                c.agreement
            ));
        }
        Ok(())
    }
}

/// The bytes of the regular file `path`, refused when larger than [`MAX_FILE_LEN`].
pub(crate) fn read_capped(path: &Path) -> Result<Vec<u8>, ModelFileErrorKind> {
    use crate::input::InputError;
    crate::input::read_capped(path, MAX_FILE_LEN).map_err(|e| match e {
        InputError::Read(e) => ModelFileErrorKind::Read(e),
        InputError::NotAFile(kind) => ModelFileErrorKind::NotAFile(kind),
        InputError::TooLarge { found, .. } => ModelFileErrorKind::TooLarge { found },
    })
}

/// The payload of a file of format `version` (checked to be one this build reads).
fn decode_payload(r: &mut Reader, version: u32) -> Result<ModelFile, ModelFileErrorKind> {
    let schema = r.u32("feature schema")?;
    if FeatureSchema::from_u32(schema).is_none() {
        return Err(r.malformed(format!("unknown feature schema {schema}")));
    }
    let n_names = r.len("feature name count")?;
    if n_names > USER_MAX_WIDTH {
        return Err(r.malformed(format!("{n_names} feature names, at most {USER_MAX_WIDTH}")));
    }
    let mut feature_names = Vec::with_capacity(n_names);
    for i in 0..n_names {
        feature_names.push(r.string(&format!("feature name {i}"))?);
    }
    let created_unix_secs = r.u64("creation time")?;
    let npk_version = r.string("npk version")?;
    let origin = if version < 3 {
        Origin::Trained
    } else {
        match r.u32("origin")? {
            0 => Origin::Trained,
            1 => Origin::ImportedOnnx {
                file: r.string("source file name")?,
                producer: r.string("producer")?,
                producer_version: r.string("producer version")?,
            },
            code => return Err(r.malformed(format!("unknown origin {code}"))),
        }
    };
    let provenance = Provenance {
        created_unix_secs,
        npk_version,
        origin,
    };

    let n_layers = r.len("float layer count")?;
    if n_layers > MAX_LAYERS {
        return Err(r.malformed(format!("{n_layers} float layers, at most {MAX_LAYERS}")));
    }
    let mut layers = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let in_dim = r.len(&format!("layer {l} input width"))?;
        let out_dim = r.len(&format!("layer {l} output width"))?;
        let weights = r.f32s(&format!("layer {l} weights"))?;
        let bias = r.f32s(&format!("layer {l} biases"))?;
        layers.push(Dense {
            in_dim,
            out_dim,
            weights,
            bias,
        });
    }
    let standardizer = Standardizer {
        mean: r.f32s("standardizer means")?,
        std: r.f32s("standardizer deviations")?,
    };

    let frac_bits = r.bytes("input encoding")?.to_vec();
    let input = r.f64s("input scales")?;
    let n_scale_layers = r.len("scale layer count")?;
    if n_scale_layers > MAX_LAYERS {
        return Err(r.malformed(format!(
            "{n_scale_layers} layers of scales, at most {MAX_LAYERS}"
        )));
    }
    let mut scale_layers = Vec::with_capacity(n_scale_layers);
    for l in 0..n_scale_layers {
        let acc = r.f64s(&format!("layer {l} accumulator scales"))?;
        let output = r.f64s(&format!("layer {l} output scales"))?;
        scale_layers.push(LayerScales { acc, output });
    }
    let calibration = CalibrationInfo {
        input_clip: r.f64("input clip")?,
        agreement: r.f64("agreement")?,
    };

    let model = if version <= KERNEL_BLOCK_VERSION {
        decode_kernel_block(r, schema)?
    } else {
        let says_kernel_fit = match r.u32("kernel fit")? {
            0 => false,
            1 => true,
            code => return Err(r.malformed(format!("kernel fit flag {code}: must be 0 or 1"))),
        };
        let model = decode_int_model(r, schema)?;
        r.finish()?;
        // Only a model that validates is asked whether the kernel holds it.
        model.validate().map_err(ModelFileErrorKind::InvalidModel)?;
        if says_kernel_fit != model.kernel_model().is_ok() {
            return Err(ModelFileErrorKind::Inconsistent(format!(
                "the file says the kernel {} hold the quantized model, but it is {}",
                if says_kernel_fit { "can" } else { "cannot" },
                model.shape()
            )));
        }
        model
    };
    Ok(ModelFile {
        mlp: Mlp { layers },
        standardizer,
        quantized: Quantized {
            model,
            encoding: InputEncoding { frac_bits },
            scales: Scales {
                input,
                layers: scale_layers,
            },
            calibration,
        },
        feature_names,
        provenance,
    })
}

/// The quantized model of a version 2 or 3 file: the kernel's `Model` block, checked and
/// converted to the userspace form.
fn decode_kernel_block(r: &mut Reader, schema: u32) -> Result<IntModel, ModelFileErrorKind> {
    let raw = r.bytes("quantized model")?;
    let mut model: Box<Model> = bytemuck::zeroed_box();
    let dst = bytemuck::bytes_of_mut(&mut *model);
    if raw.len() != dst.len() {
        return Err(r.malformed(format!(
            "the quantized model has {} bytes, expected {}",
            raw.len(),
            dst.len()
        )));
    }
    dst.copy_from_slice(raw);
    r.finish()?;
    if model.header.feature_schema != schema {
        return Err(ModelFileErrorKind::Inconsistent(format!(
            "metadata says feature schema {schema}, the quantized model {}",
            model.header.feature_schema
        )));
    }
    IntModel::from_kernel(&model).map_err(ModelFileErrorKind::InvalidKernelModel)
}

/// The quantized model of a version 4 file (see docs/model-format.md).
fn encode_int_model(w: &mut Writer, m: &IntModel) {
    w.u32(m.drop_margin);
    w.i32s(&m.input.offset);
    w.i32s(&m.input.multiplier);
    w.i32s(&m.input.shift);
    w.len(m.layers.len());
    for l in &m.layers {
        w.len(l.in_dim);
        w.len(l.out_dim);
        let a = l.activation;
        w.i32s(&[a.zero_point, a.min, a.max]);
        w.bytes(bytemuck::cast_slice(&l.weights));
        w.i32s(&l.bias);
        w.i32s(&l.multiplier);
        w.i32s(&l.shift);
    }
}

/// [`encode_int_model`]'s inverse; lengths are checked by [`IntModel::validate`] afterwards.
fn decode_int_model(r: &mut Reader, schema: u32) -> Result<IntModel, ModelFileErrorKind> {
    let schema = FeatureSchema::from_u32(schema)
        .ok_or_else(|| r.malformed(format!("unknown feature schema {schema}")))?;
    let drop_margin = r.u32("drop margin")?;
    let input = IntInput {
        offset: r.i32s("input offsets")?,
        multiplier: r.i32s("input multipliers")?,
        shift: r.i32s("input shifts")?,
    };
    let n_layers = r.len("quantized layer count")?;
    if n_layers > MAX_LAYERS {
        return Err(r.malformed(format!("{n_layers} quantized layers, at most {MAX_LAYERS}")));
    }
    let mut layers = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let in_dim = r.len(&format!("quantized layer {l} input width"))?;
        let out_dim = r.len(&format!("quantized layer {l} output width"))?;
        let activation = match r.i32s(&format!("quantized layer {l} activation"))?[..] {
            [zero_point, min, max] => Activation {
                zero_point,
                min,
                max,
            },
            ref other => {
                return Err(r.malformed(format!(
                    "quantized layer {l} activation: {} values, expected 3",
                    other.len()
                )));
            }
        };
        let weights = r.bytes(&format!("quantized layer {l} weights"))?;
        layers.push(IntLayer {
            in_dim,
            out_dim,
            weights: bytemuck::cast_slice(weights).to_vec(),
            bias: r.i32s(&format!("quantized layer {l} biases"))?,
            multiplier: r.i32s(&format!("quantized layer {l} multipliers"))?,
            shift: r.i32s(&format!("quantized layer {l} shifts"))?,
            activation,
        });
    }
    Ok(IntModel {
        schema,
        drop_margin,
        input,
        layers,
    })
}
