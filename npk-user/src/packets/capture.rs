//! Feature vectors exactly as the kernel computed them: the classifier runs with
//! [`FLAG_SAMPLE_ALL`] and copies every classified packet's features, flow and verdict into its
//! ring buffer, which [`Sampler`] reads. Training data taken this way comes from the real data
//! path: the driver's frames, the kernel's clock, the kernel's flow table.

use std::{
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::maps::{Map, MapData, MapError, RingBuf};
use npk_common::{
    fixed::quantize_multiplier,
    maps::{Action, Config, FLAG_SAMPLE_ALL, MAP_SAMPLES, Sample},
    model::{FeatureSchema, LOGIT_MAX, LOGIT_MIN, MAX_CLASSES, Model},
    packet::INGRESS_FEATURES,
};

use crate::kernel::{
    Classifier,
    attach::{self, AttachError, AttachMode, Attachment, IfaceName},
};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("map {MAP_SAMPLES} missing (taken already?)")]
    MissingSamples,
    #[error("opening the sample ring buffer")]
    Ring(#[source] MapError),
    #[error("opening the sample ring buffer pinned at {}", path.display())]
    OpenPin {
        path: PathBuf,
        #[source]
        source: MapError,
    },
}

type Result<T, E = CaptureError> = std::result::Result<T, E>;

/// The model a capture runs: the classifier computes features only for packets it classifies,
/// so one must be loaded. One layer of zero weights: every packet is class 0, and passes. It
/// reads the ingress features only (v5), so it attaches on every kernel; the samples carry
/// every feature the classifier computes, the replies included where they are counted.
pub fn pass_model() -> Box<Model> {
    let mut m: Box<Model> = bytemuck::allocation::zeroed_box();
    m.set_shape(FeatureSchema::PacketV5, INGRESS_FEATURES, &[], 2)
        .expect("the packet features and two classes fit the kernel");
    let (mult, shift) = quantize_multiplier(1.0).expect("1.0 is a valid multiplier");
    m.input.multiplier[..INGRESS_FEATURES].fill(mult);
    m.input.shift[..INGRESS_FEATURES].fill(shift);
    let l = &mut m.layers[0];
    (l.act_min, l.act_max) = (LOGIT_MIN, LOGIT_MAX);
    l.multiplier[..2].fill(mult);
    l.shift[..2].fill(shift);
    m
}

/// Infer every packet, sample every packet, act per class as `class_action` says.
pub fn sample_all(class_action: [u8; MAX_CLASSES]) -> Config {
    Config {
        flags: FLAG_SAMPLE_ALL,
        class_action,
        ..Config::default()
    }
}

/// Attaches the classifier to `iface` to record features: [`pass_model`], every class passes,
/// every packet sampled. Dropping the attachment detaches.
pub fn start(iface: &IfaceName, mode: AttachMode) -> Result<(Attachment, Sampler)> {
    let config = sample_all([Action::Pass as u8; MAX_CLASSES]);
    let mut attachment = attach::attach(iface, mode, &pass_model(), &config, false)?;
    let sampler = Sampler::take(&mut attachment.classifier)?;
    Ok((attachment, sampler))
}

/// Reads the classifier's sample ring buffer.
pub struct Sampler {
    ring: RingBuf<MapData>,
}

impl Sampler {
    /// Takes the ring buffer map out of `classifier` (the kernel side keeps writing it).
    pub fn take(classifier: &mut Classifier) -> Result<Self> {
        let map = classifier
            .ebpf
            .take_map(MAP_SAMPLES)
            .ok_or(CaptureError::MissingSamples)?;
        Ok(Self {
            ring: RingBuf::try_from(map).map_err(CaptureError::Ring)?,
        })
    }

    /// Opens the ring buffer of the attachment whose pins are in `dir` (foreground and pinned
    /// attachments both pin it). Two readers of one ring buffer share its samples: each gets
    /// some of them.
    pub fn from_pins(dir: &Path) -> Result<Self> {
        let path = dir.join(MAP_SAMPLES);
        let opened = MapData::from_pin(&path)
            .and_then(Map::from_map_data)
            .and_then(RingBuf::try_from);
        match opened {
            Ok(ring) => Ok(Self { ring }),
            Err(source) => Err(CaptureError::OpenPin { path, source }),
        }
    }

    /// Calls `f` for every sample waiting; returns how many there were. Never blocks.
    pub fn drain(&mut self, mut f: impl FnMut(&Sample)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if let Some(bytes) = item.get(..size_of::<Sample>()) {
                f(&bytemuck::pod_read_unaligned(bytes));
                n += 1;
            }
        }
        n
    }
}

/// Readable (for poll(2)) when samples wait.
impl AsFd for Sampler {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use npk_common::infer::{PlainLoop, Scratch, infer};

    #[test]
    fn the_pass_model_is_valid_and_says_class_0() {
        let m = pass_model();
        m.validate().unwrap();
        let mut scratch = Box::new(Scratch::new());
        for v in [0, 1, -5, i32::MAX] {
            scratch.features[..INGRESS_FEATURES].fill(v);
            assert_eq!(infer(&m, &mut scratch, &mut PlainLoop), 0);
        }
    }
}
