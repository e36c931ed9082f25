//! npk's UDP inference protocol, version 1 (docs/wire-format.md has the tables and examples).
//!
//! One request datagram carries one feature vector; one reply datagram answers it. All integers
//! are little-endian. Every request that reaches a server gets exactly one reply: a bad one gets
//! an error [`Status`] (and is counted), never a guessed answer. Two exceptions, both counted
//! and never answered: a request from or to an address no host answers (npk_common::service::peer), and
//! a request shorter than its reply would be (no server amplifies a spoofed request; clients
//! pad their requests to the reply they expect, [`encode_request`]).
//!
//! # Request
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"NPKQ"` ([`REQUEST_MAGIC`]) |
//! | 4 | 2 | wire version ([`WIRE_VERSION`]) |
//! | 6 | 2 | padding P: bytes after the features, ignored (0 in requests of before padding) |
//! | 8 | 4 | request id, echoed in the reply |
//! | 12 | 4 | model id: [`ANY_MODEL`] or the model version the client expects |
//! | 16 | 4 N | N int32 features; N must equal the model's input count |
//! | 16 + 4 N | P | padding |
//!
//! # Reply
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"NPKA"` ([`REPLY_MAGIC`]) |
//! | 4 | 2 | wire version |
//! | 6 | 2 | [`Status`] |
//! | 8 | 4 | request id (0 when the request was too short to hold one) |
//! | 12 | 4 | class, or [`NO_CLASS`] on an error |
//! | 16 | 4 | version of the active model (0 when there is none) |
//! | 20 | 4 | detail: the expected feature count for `WrongFeatureCount`, the supported wire version for `BadVersion`, else 0 |
//! | 24 | 4 C | the C int32 logits (C = the model's classes); none on an error |
//!
//! The checks run in a fixed order, and the first that fails names the status: length
//! (`ShortPacket`), magic, version, model present, model id, feature count. Then the reply's
//! length is compared with the request's ([`Checked::refused`]).

use bytemuck::{Pod, Zeroable};

use crate::infer::{NeuronLoop, Scratch, infer};
use crate::model::{MAX_CLASSES, MAX_INPUTS, Model};
use crate::service::peer::{IfAddr, MAX_IF_ADDRS};

/// `b"NPKQ"` read as a little-endian u32.
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"NPKQ");
/// `b"NPKA"` read as a little-endian u32: a reply is never mistaken for a request.
pub const REPLY_MAGIC: u32 = u32::from_le_bytes(*b"NPKA");
/// Bumped whenever a layout in this module changes.
pub const WIRE_VERSION: u16 = 1;
pub const REQUEST_HEADER_LEN: usize = 16;
pub const REPLY_HEADER_LEN: usize = 24;
pub const MAX_REQUEST_LEN: usize = REQUEST_HEADER_LEN + 4 * MAX_INPUTS;
pub const MAX_REPLY_LEN: usize = REPLY_HEADER_LEN + 4 * MAX_CLASSES;
/// Model id of a request that takes whatever model is active.
pub const ANY_MODEL: u32 = 0;
/// Class field of an error reply.
pub const NO_CLASS: u32 = u32::MAX;
/// The port `npk serve` and `npk client` use unless told otherwise.
pub const DEFAULT_PORT: u16 = 7878;

/// What happened to a request.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok = 0,
    /// The first 4 bytes are not [`REQUEST_MAGIC`].
    BadMagic = 1,
    /// The version is not [`WIRE_VERSION`].
    BadVersion = 2,
    /// The features (the bytes between the header and the padding) are not `4 * num_inputs`.
    WrongFeatureCount = 3,
    /// The request names a model id other than [`ANY_MODEL`] and the active model's version.
    ModelMismatch = 4,
    /// Shorter than [`REQUEST_HEADER_LEN`]. No server sends it any more: such a request is
    /// shorter than any reply and refused; it stays for the clients of older servers.
    ShortPacket = 5,
    /// No model has been pushed yet.
    NoModel = 6,
    /// Only the kernel server: a model push replaced the model during the inference; the
    /// answer was thrown away. Sending the request again is safe.
    Retry = 7,
}

pub const NUM_STATUSES: usize = 8;

impl Status {
    pub const ALL: [Status; NUM_STATUSES] = [
        Self::Ok,
        Self::BadMagic,
        Self::BadVersion,
        Self::WrongFeatureCount,
        Self::ModelMismatch,
        Self::ShortPacket,
        Self::NoModel,
        Self::Retry,
    ];

    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            0 => Some(Self::Ok),
            1 => Some(Self::BadMagic),
            2 => Some(Self::BadVersion),
            3 => Some(Self::WrongFeatureCount),
            4 => Some(Self::ModelMismatch),
            5 => Some(Self::ShortPacket),
            6 => Some(Self::NoModel),
            7 => Some(Self::Retry),
            _ => None,
        }
    }

    /// The name used in docs, counters and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::BadMagic => "BAD_MAGIC",
            Self::BadVersion => "BAD_VERSION",
            Self::WrongFeatureCount => "WRONG_FEATURE_COUNT",
            Self::ModelMismatch => "MODEL_MISMATCH",
            Self::ShortPacket => "SHORT_PACKET",
            Self::NoModel => "NO_MODEL",
            Self::Retry => "RETRY",
        }
    }
}

/// What a server knows about its active model when it checks a request.
///
/// Plain fields rather than an `Option`: in the kernel every path must leave defined values
/// (an empty `Option`'s payload is undefined, LLVM may spill it from any register, and the
/// verifier refuses to read a register never written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveModel {
    pub loaded: bool,
    /// Meaningful only when `loaded`.
    pub version: u32,
    pub num_inputs: u32,
    pub num_classes: u32,
}

impl ActiveModel {
    pub const NONE: Self = Self {
        loaded: false,
        version: 0,
        num_inputs: 0,
        num_classes: 0,
    };

    pub fn of(model: Option<&Model>) -> Self {
        match model {
            Some(m) => Self {
                loaded: true,
                version: m.header.model_version,
                num_inputs: m.header.num_inputs,
                num_classes: m.header.num_classes,
            },
            None => Self::NONE,
        }
    }
}

/// The outcome of [`check_request`]: status OK means the request can be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub status: Status,
    /// 0 when the request is too short to hold one.
    pub request_id: u32,
    /// The reply's detail field.
    pub detail: u32,
    /// The reply's length.
    pub reply_len: usize,
    /// The reply would be longer than the request: the server sends nothing (and counts it),
    /// so that a request with a spoofed source is never answered with more bytes than it had.
    pub refused: bool,
}

/// The length of an OK reply of a model with `classes` classes: what a request must be padded
/// to at least.
#[inline(always)]
pub const fn ok_reply_len(classes: usize) -> usize {
    let classes = if classes < MAX_CLASSES {
        classes
    } else {
        MAX_CLASSES
    };
    REPLY_HEADER_LEN + 4 * classes
}

#[inline(always)]
fn le16(b: &[u8; REQUEST_HEADER_LEN], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

#[inline(always)]
fn le32(b: &[u8; REQUEST_HEADER_LEN], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Checks a request of `len` payload bytes whose first `min(len, 16)` bytes are in `head`
/// (the rest of `head` is ignored).
///
/// Fixed-size input and plain integer logic: the kernel program runs this same function.
#[inline(always)]
pub fn check_request(head: &[u8; REQUEST_HEADER_LEN], len: usize, model: &ActiveModel) -> Checked {
    // The request id sits before the model id so that a request cut short after it still has
    // its id echoed.
    let request_id = if len >= 12 { le32(head, 8) } else { 0 };
    let (status, detail) = if len < REQUEST_HEADER_LEN {
        (Status::ShortPacket, 0)
    } else if le32(head, 0) != REQUEST_MAGIC {
        (Status::BadMagic, 0)
    } else if le16(head, 4) != WIRE_VERSION {
        (Status::BadVersion, WIRE_VERSION as u32)
    } else if !model.loaded {
        (Status::NoModel, 0)
    } else if le32(head, 12) != ANY_MODEL && le32(head, 12) != model.version {
        (Status::ModelMismatch, 0)
    } else if len - REQUEST_HEADER_LEN < le16(head, 6) as usize
        || len - REQUEST_HEADER_LEN - le16(head, 6) as usize != 4 * model.num_inputs as usize
    {
        (Status::WrongFeatureCount, model.num_inputs)
    } else {
        (Status::Ok, 0)
    };
    let reply_len = match status {
        Status::Ok => ok_reply_len(model.num_classes as usize),
        _ => REPLY_HEADER_LEN,
    };
    Checked {
        status,
        request_id,
        detail,
        reply_len,
        refused: reply_len > len,
    }
}

/// Writes a reply header.
#[inline(always)]
pub fn write_reply_header(
    out: &mut [u8; REPLY_HEADER_LEN],
    status: Status,
    request_id: u32,
    class: u32,
    model_version: u32,
    detail: u32,
) {
    let words = [
        REPLY_MAGIC,
        WIRE_VERSION as u32 | (status as u32) << 16,
        request_id,
        class,
        model_version,
        detail,
    ];
    for (i, w) in words.iter().enumerate() {
        let b = w.to_le_bytes();
        out[4 * i] = b[0];
        out[4 * i + 1] = b[1];
        out[4 * i + 2] = b[2];
        out[4 * i + 3] = b[3];
    }
}

/// Answers one request payload with `model` (`None`: no model loaded), the way every npk server
/// does: the userspace server calls it directly, the client calls it to know what each reply
/// must be. Returns the reply length written to `out`, or `None` for a request refused
/// because its reply would be longer ([`Checked::refused`]).
pub fn respond<L: NeuronLoop>(
    request: &[u8],
    model: Option<&Model>,
    scratch: &mut Scratch,
    looper: &mut L,
    out: &mut [u8; MAX_REPLY_LEN],
) -> Option<usize> {
    let mut head = [0u8; REQUEST_HEADER_LEN];
    let n = request.len().min(REQUEST_HEADER_LEN);
    head[..n].copy_from_slice(&request[..n]);
    let active = ActiveModel::of(model);
    let version = if active.loaded { active.version } else { 0 };
    // (MAX_REPLY_LEN > REPLY_HEADER_LEN: always there.)
    let header = out.first_chunk_mut::<REPLY_HEADER_LEN>()?;
    let checked = check_request(&head, request.len(), &active);
    if checked.refused {
        return None;
    }
    let (Status::Ok, Some(model)) = (checked.status, model) else {
        // (check_request says OK only with a model loaded.)
        let c = checked;
        write_reply_header(header, c.status, c.request_id, NO_CLASS, version, c.detail);
        return Some(REPLY_HEADER_LEN);
    };
    let request_id = checked.request_id;
    let features = &request[REQUEST_HEADER_LEN..];
    for (f, b) in scratch.features.iter_mut().zip(features.chunks_exact(4)) {
        *f = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    let class = infer(model, scratch, looper);
    write_reply_header(header, Status::Ok, request_id, class, version, 0);
    let logits = scratch.logits(model);
    for (i, l) in logits.iter().enumerate() {
        let at = REPLY_HEADER_LEN + 4 * i;
        out[at..at + 4].copy_from_slice(&l.to_le_bytes());
    }
    Some(REPLY_HEADER_LEN + 4 * logits.len())
}

/// Encodes a request into `out`, padded to `min_len` bytes (the reply the client expects,
/// [`ok_reply_len`]: a server refuses a request shorter than its reply); returns its length.
pub fn encode_request(
    out: &mut [u8],
    request_id: u32,
    model_id: u32,
    features: &[i32],
    min_len: usize,
) -> Result<usize, WireError> {
    if features.len() > MAX_INPUTS {
        return Err(WireError::TooManyFeatures(features.len()));
    }
    let unpadded = REQUEST_HEADER_LEN + 4 * features.len();
    let padding = min_len.saturating_sub(unpadded).min(u16::MAX as usize);
    let len = unpadded + padding;
    let Some(out) = out.get_mut(..len) else {
        return Err(WireError::BufferTooSmall {
            needed: len,
            have: out.len(),
        });
    };
    out[0..4].copy_from_slice(&REQUEST_MAGIC.to_le_bytes());
    out[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&(padding as u16).to_le_bytes());
    out[8..12].copy_from_slice(&request_id.to_le_bytes());
    out[12..16].copy_from_slice(&model_id.to_le_bytes());
    for (chunk, f) in out[REQUEST_HEADER_LEN..].chunks_exact_mut(4).zip(features) {
        chunk.copy_from_slice(&f.to_le_bytes());
    }
    out[unpadded..].fill(0);
    Ok(len)
}

/// Overwrites the request id of an encoded request (the client reuses encoded requests).
pub fn set_request_id(request: &mut [u8], request_id: u32) -> Result<(), WireError> {
    match request.get_mut(8..12) {
        Some(b) => {
            b.copy_from_slice(&request_id.to_le_bytes());
            Ok(())
        }
        None => Err(WireError::Short {
            len: request.len(),
            needed: 12,
        }),
    }
}

/// A decoded reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub request_id: u32,
    pub class: u32,
    pub model_version: u32,
    pub detail: u32,
    pub num_logits: usize,
    pub logits: [i32; MAX_CLASSES],
}

impl Reply {
    pub fn logits(&self) -> &[i32] {
        &self.logits[..self.num_logits]
    }
}

/// Why bytes are not a valid reply (or a request cannot be encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    Short {
        len: usize,
        needed: usize,
    },
    BadMagic(u32),
    BadVersion(u16),
    UnknownStatus(u16),
    /// The logits are not whole int32s, or more than [`MAX_CLASSES`] of them.
    LogitBytes(usize),
    /// An error reply carries logits, or an OK reply carries fewer than 2.
    LogitsVsStatus {
        status: Status,
        logits: usize,
    },
    TooManyFeatures(usize),
    BufferTooSmall {
        needed: usize,
        have: usize,
    },
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Short { len, needed } => {
                write!(f, "{len} bytes: shorter than the {needed}-byte header")
            }
            Self::BadMagic(m) => write!(f, "magic {m:#010x}, expected {REPLY_MAGIC:#010x}"),
            Self::BadVersion(v) => write!(f, "wire version {v}, this build speaks {WIRE_VERSION}"),
            Self::UnknownStatus(s) => write!(f, "unknown status {s}"),
            Self::LogitBytes(n) => write!(
                f,
                "{n} logit bytes: not a multiple of 4 or more than {MAX_CLASSES} logits"
            ),
            Self::LogitsVsStatus { status, logits } => {
                write!(f, "status {} with {logits} logits", status.name())
            }
            Self::TooManyFeatures(n) => {
                write!(f, "{n} features: a request carries at most {MAX_INPUTS}")
            }
            Self::BufferTooSmall { needed, have } => {
                write!(f, "buffer of {have} bytes, the message needs {needed}")
            }
        }
    }
}

impl core::error::Error for WireError {}

/// Decodes and checks a reply.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, WireError> {
    let Some(head) = bytes.first_chunk::<REPLY_HEADER_LEN>() else {
        return Err(WireError::Short {
            len: bytes.len(),
            needed: REPLY_HEADER_LEN,
        });
    };
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if word(0) != REPLY_MAGIC {
        return Err(WireError::BadMagic(word(0)));
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version != WIRE_VERSION {
        return Err(WireError::BadVersion(version));
    }
    let raw_status = u16::from_le_bytes([head[6], head[7]]);
    let status = Status::from_u16(raw_status).ok_or(WireError::UnknownStatus(raw_status))?;
    let logit_bytes = bytes.len() - REPLY_HEADER_LEN;
    if !logit_bytes.is_multiple_of(4) || logit_bytes / 4 > MAX_CLASSES {
        return Err(WireError::LogitBytes(logit_bytes));
    }
    let num_logits = logit_bytes / 4;
    if (status == Status::Ok) != (num_logits >= 2) || (status != Status::Ok && num_logits != 0) {
        return Err(WireError::LogitsVsStatus {
            status,
            logits: num_logits,
        });
    }
    let mut logits = [0; MAX_CLASSES];
    for (l, b) in logits
        .iter_mut()
        .zip(bytes[REPLY_HEADER_LEN..].chunks_exact(4))
    {
        *l = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(Reply {
        status,
        request_id: word(8),
        class: word(12),
        model_version: word(16),
        detail: word(20),
        num_logits,
        logits,
    })
}

/// `PerCpuArray<ServeCounters>`, one entry: the kernel server's counters.
pub const MAP_SERVE_STATS: &str = "NPK_SERVE_STATS";
/// `Array<ServeConfig>`, one entry.
pub const MAP_SERVE_CONFIG: &str = "NPK_SERVE_CFG";
/// `PerCpuArray`, one entry: the server's working memory (npk-ebpf's `ServeBuf`).
pub const MAP_SERVE_BUF: &str = "NPK_SERVE_BUF";
/// The XDP inference server.
pub const PROG_SERVE: &str = "npk_serve";

/// The kernel server's configuration.
///
/// # Layout
/// 168 bytes: the port (2), padding (6), then the interface's addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ServeConfig {
    /// UDP port served, host byte order; 0 (the initial value) serves nothing.
    pub port: u16,
    pub _pad: u16,
    pub _reserved: u32,
    /// The served interface's addresses (unused entries [`IfAddr::NONE`]): requests to other
    /// destinations, and from their subnets' broadcast addresses, are passed to the stack
    /// (npk_common::service::peer).
    pub addrs: [IfAddr; MAX_IF_ADDRS],
}

/// Per-CPU counters of the kernel server (the userspace server keeps the same ones).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct ServeCounters {
    /// UDP datagrams to the served port with sound IP and UDP headers.
    pub requests: u64,
    /// Replies sent, by [`Status`] value.
    pub replies: [u64; NUM_STATUSES],
    /// Frames that are not for the server, passed to the stack.
    pub passed: u64,
    /// Frames to the served port whose IP or UDP header is inconsistent (lengths): passed to
    /// the stack, which drops them.
    pub malformed: u64,
    /// IPv4 fragments and IPv6 with extension headers to any port: passed.
    pub unsupported: u64,
    /// Inferences retried because a push rewrote the model slot under them.
    pub swap_retries: u64,
    /// Replies that could not be written into the frame (dropped).
    pub tx_errors: u64,
    /// Datagrams to the served port from or to an address the server does not answer
    /// (npk_common::service::peer): the kernel passes them to the stack, userspace sends nothing. Not
    /// in `requests`.
    pub refused_address: u64,
    /// Requests shorter than their reply would be ([`Checked::refused`]): dropped unanswered.
    /// In `requests`, not in `replies`.
    pub refused_amplifying: u64,
}

const _: () = assert!(core::mem::size_of::<ServeConfig>() == 8 + 20 * MAX_IF_ADDRS);
const _: () = assert!(core::mem::size_of::<ServeCounters>() == 8 * (NUM_STATUSES + 8));

impl ServeCounters {
    /// Adds `other` into `self` (summing per-CPU values).
    pub fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        for (a, b) in self.replies.iter_mut().zip(other.replies) {
            *a += b;
        }
        self.passed += other.passed;
        self.malformed += other.malformed;
        self.unsupported += other.unsupported;
        self.swap_retries += other.swap_retries;
        self.tx_errors += other.tx_errors;
        self.refused_address += other.refused_address;
        self.refused_amplifying += other.refused_amplifying;
    }

    /// Replies of every status.
    pub fn replies_total(&self) -> u64 {
        self.replies.iter().sum()
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data without padding (size asserts above).
    unsafe impl aya::Pod for super::ServeConfig {}
    unsafe impl aya::Pod for super::ServeCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::PlainLoop;
    use crate::model::{FeatureSchema, MODEL_FORMAT_VERSION, MODEL_MAGIC};
    use std::vec::Vec;

    /// A 3-input, 2-class single-layer model with identity-ish scales: logits are predictable.
    fn tiny_model() -> Model {
        let mut m = Model::zeroed();
        m.header.magic = MODEL_MAGIC;
        m.header.format_version = MODEL_FORMAT_VERSION;
        m.header.model_version = 9;
        m.header.feature_schema = FeatureSchema::Tabular as u32;
        m.header.num_layers = 1;
        m.header.num_inputs = 3;
        m.header.num_classes = 2;
        for i in 0..3 {
            m.input.multiplier[i] = 1 << 30;
            m.input.shift[i] = 30; // x * 1.0
        }
        let l = &mut m.layers[0];
        l.in_dim = 3;
        l.out_dim = 2;
        l.act_min = -32767;
        l.act_max = 32767;
        for (o, i) in [(0, 0), (1, 1), (1, 2)] {
            l.set_weight(o, i, 1);
        }
        for o in 0..2 {
            l.multiplier[o] = 1 << 30;
            l.shift[o] = 30;
        }
        m.validate().unwrap();
        m
    }

    /// A request padded to the tiny model's OK reply (32 bytes).
    fn request(id: u32, model_id: u32, features: &[i32]) -> Vec<u8> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let n = encode_request(&mut buf, id, model_id, features, ok_reply_len(2)).unwrap();
        buf[..n].to_vec()
    }

    fn try_answer(req: &[u8], model: Option<&Model>) -> Option<Reply> {
        let mut out = [0u8; MAX_REPLY_LEN];
        let n = respond(req, model, &mut Scratch::new(), &mut PlainLoop, &mut out)?;
        Some(decode_reply(&out[..n]).unwrap())
    }

    #[track_caller]
    fn answer(req: &[u8], model: Option<&Model>) -> Reply {
        try_answer(req, model).expect("answered")
    }

    #[test]
    fn request_encodes_as_documented() {
        let mut buf = [0u8; 64];
        let n = encode_request(&mut buf, 0x0102_0304, 0, &[-1, 2], 0).unwrap();
        let r = buf[..n].to_vec();
        assert_eq!(&r[..4], b"NPKQ");
        assert_eq!(&r[4..8], &[1, 0, 0, 0]);
        assert_eq!(&r[8..12], &[4, 3, 2, 1]);
        assert_eq!(&r[12..16], &[0; 4]);
        assert_eq!(&r[16..], &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]);
        // Padded to 36: 12 zero bytes after the features, counted at offset 6.
        buf.fill(0xee);
        assert_eq!(encode_request(&mut buf, 1, 0, &[-1, 2], 36), Ok(36));
        assert_eq!(&buf[4..8], &[1, 0, 12, 0]);
        assert_eq!(&buf[16..24], &[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0]);
        assert_eq!(&buf[24..36], &[0; 12]);
        // Already long enough: no padding.
        assert_eq!(encode_request(&mut buf, 1, 0, &[-1, 2], 20), Ok(24));
        assert_eq!(&buf[6..8], &[0, 0]);
        let mut small = [0u8; 20];
        assert_eq!(
            encode_request(&mut small, 1, 0, &[1, 2], 0),
            Err(WireError::BufferTooSmall {
                needed: 24,
                have: 20
            })
        );
        let mut r = r;
        set_request_id(&mut r, 7).unwrap();
        assert_eq!(&r[8..12], &[7, 0, 0, 0]);
        assert!(set_request_id(&mut [0u8; 11], 1).is_err());
    }

    #[test]
    fn ok_reply_round_trips_with_logits() {
        let m = tiny_model();
        let reply = answer(&request(42, 0, &[5, 7, 11]), Some(&m));
        assert_eq!(reply.status, Status::Ok);
        assert_eq!(reply.request_id, 42);
        assert_eq!(reply.model_version, 9);
        assert_eq!(reply.logits(), &[5, 18]);
        assert_eq!(reply.class, 1);
        // Asking for the active version by id works too.
        assert_eq!(answer(&request(1, 9, &[9, 1, 1]), Some(&m)).class, 0);
    }

    #[test]
    fn every_bad_request_gets_its_status() {
        let m = tiny_model();
        let good = request(77, 0, &[1, 2, 3]);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        let mut over_padded = good.clone();
        over_padded[6] = 17; // more padding than the 16 bytes after the header
        // (request, model, status, echoed request id, detail)
        type Case<'a> = (&'a [u8], Option<&'a Model>, Status, u32, u32);
        let cases: [Case; 6] = [
            (&over_padded, Some(&m), Status::WrongFeatureCount, 77, 3),
            (&bad_magic, Some(&m), Status::BadMagic, 77, 0),
            (&bad_version, Some(&m), Status::BadVersion, 77, 1),
            (&good, None, Status::NoModel, 77, 0),
            (
                &request(77, 3, &[1, 2, 3]),
                Some(&m),
                Status::ModelMismatch,
                77,
                0,
            ),
            (&good[..27], Some(&m), Status::WrongFeatureCount, 77, 3),
        ];
        for (req, model, status, id, detail) in cases {
            let r = answer(req, model);
            assert_eq!(
                (r.status, r.request_id, r.detail, r.class, r.num_logits),
                (status, id, detail, NO_CLASS, 0),
                "request of {} bytes",
                req.len()
            );
        }
        let two = request(5, 0, &[1, 2]);
        assert_eq!(answer(&two, Some(&m)).status, Status::WrongFeatureCount);
        let four = request(5, 0, &[1, 2, 3, 4]);
        assert_eq!(answer(&four, Some(&m)).status, Status::WrongFeatureCount);
    }

    /// No reply is longer than its request: shorter requests get no reply at all.
    #[test]
    fn requests_shorter_than_their_reply_are_refused() {
        let m = tiny_model();
        let good = request(77, 0, &[1, 2, 3]);
        assert_eq!(good.len(), 32);
        let mut unpadded = [0u8; MAX_REQUEST_LEN];
        let n = encode_request(&mut unpadded, 77, 0, &[1, 2, 3], 0).unwrap();
        // 28 bytes for a 32-byte OK reply; the error replies (24) fit in any request of 24.
        for (req, model) in [
            (&unpadded[..n], Some(&m)),
            (&good[..23], Some(&m)),
            (&good[..15], Some(&m)),
            (&good[..11], Some(&m)),
            (&[][..], Some(&m)),
            (&good[..23], None),
        ] {
            assert_eq!(try_answer(req, model), None, "{} bytes", req.len());
            let mut head = [0u8; REQUEST_HEADER_LEN];
            let k = req.len().min(REQUEST_HEADER_LEN);
            head[..k].copy_from_slice(&req[..k]);
            let c = check_request(&head, req.len(), &ActiveModel::of(model));
            assert!(c.refused && c.reply_len > req.len());
        }
        assert_eq!(answer(&good, Some(&m)).status, Status::Ok);
        assert_eq!(answer(&unpadded[..24], None).status, Status::NoModel);
        assert_eq!(
            answer(&good[..24], Some(&m)).status,
            Status::WrongFeatureCount
        );
    }

    #[test]
    fn reply_header_round_trips_every_status() {
        for status in Status::ALL {
            assert_eq!(Status::from_u16(status as u16), Some(status));
            let mut out = [0u8; REPLY_HEADER_LEN];
            write_reply_header(&mut out, status, 3, NO_CLASS, 4, 5);
            let mut bytes = out.to_vec();
            if status == Status::Ok {
                bytes.extend_from_slice(&[0; 8]);
            }
            let r = decode_reply(&bytes).unwrap();
            assert_eq!(
                (r.status, r.request_id, r.model_version, r.detail),
                (status, 3, 4, 5)
            );
        }
        assert_eq!(Status::from_u16(NUM_STATUSES as u16), None);
    }

    #[test]
    fn broken_replies_are_refused() {
        let mut ok = [0u8; REPLY_HEADER_LEN + 8];
        write_reply_header(ok.first_chunk_mut().unwrap(), Status::Ok, 1, 0, 1, 0);
        assert!(decode_reply(&ok).is_ok());
        assert_eq!(
            decode_reply(&ok[..10]),
            Err(WireError::Short {
                len: 10,
                needed: 24
            })
        );
        assert_eq!(decode_reply(&ok[..26]), Err(WireError::LogitBytes(2)));
        assert_eq!(
            decode_reply(&ok[..28]),
            Err(WireError::LogitsVsStatus {
                status: Status::Ok,
                logits: 1
            })
        );
        let mut bad = ok;
        bad[0] = 0;
        assert!(matches!(decode_reply(&bad), Err(WireError::BadMagic(_))));
        let mut bad = ok;
        bad[4] = 9;
        assert_eq!(decode_reply(&bad), Err(WireError::BadVersion(9)));
        let mut bad = ok;
        bad[6] = 200;
        assert_eq!(decode_reply(&bad), Err(WireError::UnknownStatus(200)));
        let mut err = ok;
        err[6] = Status::NoModel as u8;
        assert!(matches!(
            decode_reply(&err),
            Err(WireError::LogitsVsStatus { .. })
        ));
        let long = [0u8; REPLY_HEADER_LEN + 4 * (MAX_CLASSES + 1)];
        let mut long = long;
        long[..REPLY_HEADER_LEN].copy_from_slice(&ok[..REPLY_HEADER_LEN]);
        assert!(matches!(decode_reply(&long), Err(WireError::LogitBytes(_))));
    }

    #[test]
    fn too_many_features_is_an_error() {
        let mut buf = [0u8; MAX_REQUEST_LEN + 4];
        let features = [0i32; MAX_INPUTS + 1];
        assert_eq!(
            encode_request(&mut buf, 0, 0, &features, 0),
            Err(WireError::TooManyFeatures(MAX_INPUTS + 1))
        );
    }
}
