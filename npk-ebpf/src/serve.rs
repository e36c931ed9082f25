//! The in-kernel inference server: a UDP request to the configured port (npk_common::service::wire) is
//! answered in place and sent back out of the interface it came in on (XDP_TX). The model is
//! the classifier's (same seqlocked slots, same `classify`), so `npk push` swaps it here too.
//! Requests from or to an address no host answers are passed to the stack, requests shorter
//! than their reply dropped (npk_common::service::peer, npk_common::service::wire::Checked::refused).
//!
//! All packet access goes through `bpf_xdp_load_bytes`/`bpf_xdp_store_bytes` and a per-CPU
//! buffer: variable offsets (VLAN tag, IPv4 options) then only index map memory, which the
//! verifier follows, and the frame can be resized without re-deriving packet pointers.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    helpers::generated::{
        bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
        bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use npk_common::{
    infer::Scratch,
    model::{MAX_CLASSES, MAX_INPUTS, ModelHeader},
    service::peer::check_frame,
    service::udp_reply::{
        FRAME_BUF, FRAME_WINDOW, OnesSum, PAYLOAD_AT, Refusal, Request, UDP_AT, UDP_BUF, fold,
        parse_request, rewrite_headers,
    },
    service::wire::{
        ActiveModel, NO_CLASS, REPLY_HEADER_LEN, REQUEST_HEADER_LEN, ServeCounters, Status,
        check_request, ok_reply_len, write_reply_header,
    },
};

use crate::{
    maps::{SCRATCH, SERVE_BUF, SERVE_CONFIG, SERVE_STATS},
    model::{BpfLoop, ModelError, bounded_len, classify, read_active},
};

/// Per-CPU working memory of one request.
pub struct ServeBuf {
    /// The frame's first bytes; the reply's Ethernet and IP headers are rewritten here.
    frame: [u8; FRAME_BUF],
    /// The request header (zero past the request's end).
    head: [u8; REQUEST_HEADER_LEN],
    /// Pseudo-header, UDP header and reply payload, contiguous for one checksum call.
    udp: [u8; UDP_BUF],
    parsed: Request,
    /// The last inference's class and model version (see [`npk_serve_infer`]).
    class: u32,
    version: u32,
}

/// Serves one frame: the program's whole body.
#[inline(always)]
pub fn serve(ctx: &XdpContext) -> u32 {
    let port = match SERVE_CONFIG.get(0) {
        Some(c) if c.port != 0 => c.port,
        _ => return xdp_action::XDP_PASS,
    };
    let (Some(stats), Some(buf)) = (SERVE_STATS.get_ptr_mut(0), SERVE_BUF.get_ptr_mut(0)) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU map values, used by one program run at a time on this CPU.
    let (stats, buf) = unsafe { (&mut *stats, &mut *buf) };
    let frame_len = ctx.data_end() - ctx.data();
    let copied = frame_len.min(FRAME_WINDOW);
    if copied == 0 {
        stats.passed += 1;
        return xdp_action::XDP_PASS;
    }
    let copied = bounded_len::<FRAME_WINDOW>(copied);
    // SAFETY: the buffer holds FRAME_BUF >= copied bytes; the helper checks the frame.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            0,
            buf.frame.as_mut_ptr() as *mut c_void,
            copied as u32,
        )
    };
    if r != 0 {
        stats.passed += 1;
        return xdp_action::XDP_PASS;
    }
    match parse(&buf.frame, copied, frame_len, port, &mut buf.parsed) {
        Ok(()) => {}
        Err(Refusal::NotOurs) => {
            stats.passed += 1;
            return xdp_action::XDP_PASS;
        }
        Err(Refusal::Malformed) => {
            stats.malformed += 1;
            return xdp_action::XDP_PASS;
        }
        Err(Refusal::Unsupported) => {
            stats.unsupported += 1;
            return xdp_action::XDP_PASS;
        }
    }
    // Passed: the stack applies the same rules (martian sources) or delivers the datagram to
    // the sockets that want broadcasts; this server only answers its own unicast traffic.
    if npk_serve_peer() != PEER_OK {
        stats.refused_address += 1;
        return xdp_action::XDP_PASS;
    }
    stats.requests += 1;
    let Answer {
        status,
        len: reply_len,
        refused,
    } = answer(ctx, buf);
    if refused {
        // Dropped, not passed: the stack would hand it to this server's own sockets.
        stats.refused_amplifying += 1;
        return xdp_action::XDP_DROP;
    }
    if reply_len == 0 {
        stats.tx_errors += 1;
        return xdp_action::XDP_DROP;
    }
    let parsed = buf.parsed;
    rewrite(&mut buf.frame, &mut buf.udp, &parsed, reply_len);
    if !transmit(ctx, buf, &parsed, frame_len, reply_len) {
        stats.tx_errors += 1;
        return xdp_action::XDP_DROP;
    }
    stats.replies[status as usize & 7] += 1;
    xdp_action::XDP_TX
}

/// [`parse_request`] as a subprogram writing to map memory, so that its many paths end in one
/// verifier state.
#[inline(never)]
fn parse(
    b: &[u8; FRAME_BUF],
    len: usize,
    frame_len: usize,
    port: u16,
    out: &mut Request,
) -> Result<(), Refusal> {
    *out = parse_request(b, len, frame_len, port)?;
    Ok(())
}

const PEER_OK: u32 = 1;

/// [`check_frame`] on the parsed request in [`ServeBuf`] with the configured addresses:
/// [`PEER_OK`], or 0 when the server must not answer.
///
/// A global function, for the same reason as [`npk_serve_infer`]: every comparison with an
/// address is a branch, and inlined, the verifier walked the rest of the program once per
/// combination of their outcomes (past its 1M instruction limit).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn npk_serve_peer() -> u32 {
    let (Some(buf), Some(config)) = (SERVE_BUF.get_ptr(0), SERVE_CONFIG.get(0)) else {
        return 0;
    };
    // SAFETY: a per-CPU map value, used by one program run at a time on this CPU.
    let buf = unsafe { &*buf };
    match check_frame(&buf.frame, &buf.parsed, &config.addrs) {
        Ok(()) => PEER_OK,
        Err(_) => 0,
    }
}

/// What [`model_header`] found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ModelState {
    Loaded,
    Absent,
    /// Pushes kept rewriting the slot while it was read.
    Busy,
}

/// Copies the active model's header into `out`, read under its slot's sequence counter so
/// that it is one model's, never half of two. `out` is left alone unless `Loaded`.
#[inline(always)]
fn model_header(out: &mut ModelHeader) -> ModelState {
    // Not counted: swap_retries counts the inference's retries.
    let mut retries = 0;
    // SAFETY: a map value; volatile keeps the read inside the sequence window.
    match read_active(
        &mut retries,
        #[inline(always)]
        |model| unsafe { Ok(core::ptr::read_volatile(&model.header)) },
    ) {
        Ok(header) => {
            *out = header;
            ModelState::Loaded
        }
        Err(ModelError::NoModel) => ModelState::Absent,
        Err(ModelError::SwapConflict) => ModelState::Busy,
    }
}

/// A reply written to `buf.udp[PAYLOAD_AT..]`, or `len` 0 when the request's bytes could not
/// be read, or `refused` (npk_common::service::wire::Checked::refused). (A plain struct, not an
/// `Option`: see npk_common::service::wire::ActiveModel.)
struct Answer {
    status: Status,
    len: usize,
    refused: bool,
}

const UNANSWERED: Answer = Answer {
    status: Status::Ok,
    len: 0,
    refused: false,
};

/// Checks the request and writes the reply payload.
#[inline(always)]
fn answer(ctx: &XdpContext, buf: &mut ServeBuf) -> Answer {
    let payload_off = buf.parsed.payload_offset();
    let len = buf.parsed.payload_len;
    buf.head = [0; REQUEST_HEADER_LEN];
    let n = len.min(REQUEST_HEADER_LEN);
    if n > 0 {
        let n = bounded_len::<REQUEST_HEADER_LEN>(n);
        // SAFETY: head holds REQUEST_HEADER_LEN >= n bytes; the helper checks the frame.
        let r = unsafe {
            bpf_xdp_load_bytes(
                ctx.ctx,
                payload_off as u32,
                buf.head.as_mut_ptr() as *mut c_void,
                n as u32,
            )
        };
        if r != 0 {
            return UNANSWERED;
        }
    }
    let mut header = ModelHeader {
        magic: 0,
        format_version: 0,
        model_version: 0,
        feature_schema: 0,
        num_layers: 0,
        num_inputs: 0,
        num_classes: 0,
        drop_margin: 0,
    };
    let state = model_header(&mut header);
    let active = ActiveModel {
        loaded: state == ModelState::Loaded,
        version: header.model_version,
        num_inputs: header.num_inputs,
        num_classes: header.num_classes,
    };
    let checked = check_request(&buf.head, len, &active);
    if checked.refused {
        return Answer {
            status: checked.status,
            len: 0,
            refused: true,
        };
    }
    let mut status = checked.status;
    if status == Status::Ok {
        status = match npk_serve_infer(ctx.ctx, header.num_inputs) {
            // The version check catches a push between the request check and the inference:
            // the feature count and the logits' buffer were the old model's.
            INFERRED if buf.version == header.model_version => {
                if write_ok_reply(buf, checked.request_id, &header).is_none() {
                    return UNANSWERED;
                }
                return Answer {
                    status: Status::Ok,
                    len: ok_reply_len(header.num_classes as usize),
                    refused: false,
                };
            }
            INFERRED | RETRY => Status::Retry,
            NO_MODEL => Status::NoModel,
            _ => return UNANSWERED,
        };
    }
    // When pushes kept rewriting the slot, whether a model is there is unknown.
    if status == Status::NoModel && state == ModelState::Busy {
        status = Status::Retry;
    }
    let Some(out) = reply_header(buf) else {
        return UNANSWERED;
    };
    write_reply_header(
        out,
        status,
        checked.request_id,
        NO_CLASS,
        header.model_version,
        checked.detail,
    );
    Answer {
        status,
        len: REPLY_HEADER_LEN,
        refused: false,
    }
}

#[inline(always)]
fn reply_header(buf: &mut ServeBuf) -> Option<&mut [u8; REPLY_HEADER_LEN]> {
    buf.udp.get_mut(PAYLOAD_AT..)?.first_chunk_mut()
}

/// [`npk_serve_infer`] results.
const INFERRED: u32 = 0;
const RETRY: u32 = 1;
const NO_MODEL: u32 = 2;
const UNREADABLE: u32 = 3;

/// Loads the request's `num_inputs` features and runs the model; on [`INFERRED`] the class
/// and the model version are in [`ServeBuf::class`]/[`ServeBuf::version`] and the logits in
/// the scratch. Otherwise [`RETRY`] (pushes kept replacing the model), [`NO_MODEL`] (the model
/// went away) or [`UNREADABLE`] (the features could not be copied).
///
/// A global function: the verifier checks it once, on its own, with unknown arguments,
/// however many ways the program reaches the call (the inference alone is several hundred
/// thousand verified instructions, and the argmax's path per class ends here too).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn npk_serve_infer(ctx: *mut xdp_md, num_inputs: u32) -> u32 {
    let (Some(scratch), Some(buf), Some(stats)) = (
        SCRATCH.get_ptr_mut(0),
        SERVE_BUF.get_ptr_mut(0),
        SERVE_STATS.get_ptr_mut(0),
    ) else {
        return UNREADABLE;
    };
    // SAFETY: per-CPU map values, used by one program run at a time on this CPU.
    let (scratch, buf, stats): (&mut Scratch, &mut ServeBuf, &mut ServeCounters) =
        unsafe { (&mut *scratch, &mut *buf, &mut *stats) };
    // The features are little-endian int32s, as in scratch.features: one copy. check_request
    // made sure the payload holds exactly num_inputs of them (1..=MAX_INPUTS).
    let bytes = 4 * (num_inputs as usize).max(1);
    let bytes = bounded_len::<{ 4 * MAX_INPUTS }>(bytes);
    let offset = buf.parsed.payload_offset() + REQUEST_HEADER_LEN;
    // SAFETY: features holds 4 * MAX_INPUTS >= bytes bytes; the helper checks the frame.
    let r = unsafe {
        bpf_xdp_load_bytes(
            ctx,
            offset as u32,
            scratch.features.as_mut_ptr() as *mut c_void,
            bytes as u32,
        )
    };
    if r != 0 {
        return UNREADABLE;
    }
    match classify(scratch, &mut stats.swap_retries, &mut BpfLoop) {
        Ok((class, version)) => {
            buf.class = class;
            buf.version = version;
            INFERRED
        }
        Err(ModelError::NoModel) => NO_MODEL,
        Err(ModelError::SwapConflict) => RETRY,
    }
}

/// Writes an OK reply: header, then the logits the last inference of `model` left.
#[inline(always)]
fn write_ok_reply(buf: &mut ServeBuf, request_id: u32, model: &ModelHeader) -> Option<()> {
    let scratch = SCRATCH.get_ptr(0)?;
    // SAFETY: per-CPU scratch, used by one program run at a time on this CPU.
    let logits = unsafe { &(*scratch).act[model.num_layers as usize & 1] };
    let (class, version) = (buf.class, buf.version);
    let reply = buf
        .udp
        .get_mut(PAYLOAD_AT..PAYLOAD_AT + REPLY_HEADER_LEN + 4 * MAX_CLASSES)?;
    let (header, logits_out) = reply.split_at_mut(REPLY_HEADER_LEN);
    write_reply_header(
        header.first_chunk_mut()?,
        Status::Ok,
        request_id,
        class,
        version,
        0,
    );
    for (chunk, l) in logits_out.chunks_exact_mut(4).zip(logits.iter()) {
        chunk.copy_from_slice(&l.to_le_bytes());
    }
    Some(())
}

/// The checksums' sums by the `bpf_csum_diff` helper.
struct HelperSum;

impl OnesSum for HelperSum {
    #[inline(always)]
    fn ones_sum<const N: usize>(buf: &mut [u8; N], at: usize, len: usize) -> u16 {
        // SAFETY: the callers pass `len` bytes inside a map value; from is NULL with size 0.
        let r = unsafe {
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                buf.as_mut_ptr().wrapping_add(at) as *mut u32,
                len as u32,
                0,
            )
        };
        fold(r as u32)
    }
}

/// [`rewrite_headers`] as a subprogram, for the same reason as [`parse`].
#[inline(never)]
fn rewrite(frame: &mut [u8; FRAME_BUF], udp: &mut [u8; UDP_BUF], p: &Request, reply_len: usize) {
    rewrite_headers::<HelperSum>(frame, udp, p, reply_len);
}

/// Resizes the frame to the reply's length and writes the rewritten headers and the reply into it.
#[inline(always)]
fn transmit(
    ctx: &XdpContext,
    buf: &mut ServeBuf,
    p: &Request,
    frame_len: usize,
    reply_len: usize,
) -> bool {
    let l4 = p.l4;
    let new_len = p.reply_frame_len(reply_len);
    let delta = new_len as i64 - frame_len as i64;
    // Every byte of the reply is written below, so the frame may grow at either end. Generic
    // XDP guarantees headroom (256 bytes) but not tailroom: a short request's skb may have
    // none, so growth goes to the front first.
    // SAFETY: the helpers check the new bounds against the frame's buffer.
    let resized = unsafe {
        delta == 0
            || (delta > 0 && bpf_xdp_adjust_head(ctx.ctx, -delta as i32) == 0)
            || bpf_xdp_adjust_tail(ctx.ctx, delta as i32) == 0
    };
    if !resized {
        return false;
    }
    // l4 is in 34..=86: Ethernet + IP (see parse_request).
    let headers = bounded_len::<FRAME_WINDOW>(l4);
    let segment = bounded_len::<128>(8 + reply_len);
    // SAFETY: both sources are map memory of at least the given sizes (FRAME_BUF >= 128,
    // UDP_BUF >= UDP_AT + 128); the helper checks the frame.
    unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            0,
            buf.frame.as_mut_ptr() as *mut c_void,
            headers as u32,
        ) == 0
            && bpf_xdp_store_bytes(
                ctx.ctx,
                l4 as u32,
                buf.udp.as_mut_ptr().wrapping_add(UDP_AT) as *mut c_void,
                segment as u32,
            ) == 0
    }
}
