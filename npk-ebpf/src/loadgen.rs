//! The in-kernel load generator and reply counter (npk_common::service::loadgen): no system call per
//! request on the measuring side, so `npk bench serve` sees the servers' costs.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    },
    programs::XdpContext,
};
use npk_common::{
    service::loadgen::{
        CASE_SHIFT, FRAME_TEMPLATE_LEN, HIST_BUCKETS, MAX_CASES, PAYLOAD_OFFSET, STAMP_MASK,
        latency_bucket,
    },
    service::wire::{MAX_REPLY_LEN, NUM_STATUSES, REPLY_MAGIC},
};

use crate::{
    maps::{
        LOADGEN_BUF, LOADGEN_CONFIG, LOADGEN_EXPECTED, LOADGEN_FRAMES, LOADGEN_STATE, LOADGEN_STATS,
    },
    model::{bounded_len, opaque},
};

/// Room for the headers and the longest reply, a power of two for masked lengths.
const REPLY_BUF: usize = 256;
const _: () = assert!(PAYLOAD_OFFSET + MAX_REPLY_LEN <= REPLY_BUF);

/// Per-CPU copy of the frame being checked.
pub struct ReplyBuf {
    bytes: [u8; REPLY_BUF],
}

/// When a request is due (GenState), rewrites the live frame into the next case's request,
/// stamps its id and sends it out of the interface BPF_PROG_TEST_RUN was given; otherwise
/// drops the frame. The frame is rewritten whole every time: live-frame pages are recycled
/// with whatever the server left in them.
#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let (Some(config), Some(state), Some(stats)) = (
        LOADGEN_CONFIG.get(0),
        LOADGEN_STATE.get_ptr_mut(0),
        LOADGEN_STATS.get_ptr_mut(0),
    ) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: the state has one writer, the one generator thread (npk_common::service::loadgen); the
    // stats are per-CPU, used by one program run at a time on this CPU.
    let (state, stats) = unsafe { (&mut *state, &mut *stats) };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let Some(stamp) = state.take(|| unsafe { bpf_ktime_get_ns() }) else {
        return xdp_action::XDP_DROP;
    };
    let case = stats.sent as u32 & config.cases.wrapping_sub(1) & (MAX_CASES as u32 - 1);
    let Some(frame) = LOADGEN_FRAMES.get_ptr(case) else {
        return xdp_action::XDP_ABORTED;
    };
    let len = config.frame_len as usize;
    if len == 0 || len > FRAME_TEMPLATE_LEN {
        return xdp_action::XDP_ABORTED;
    }
    // Live frames are recycled as the server and the counter left them, and the kernel
    // re-reads a frame's length only if the program's bounds differ from the test run's
    // input: that input is FRAME_PAD bytes longer than any request, and the frame is cut to
    // the request's length here, every time.
    let delta = len as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: the helper checks the new length against the frame.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return xdp_action::XDP_ABORTED;
    }
    let len = bounded_len::<FRAME_TEMPLATE_LEN>(len);
    let id = (case << CASE_SHIFT | stamp as u32 & STAMP_MASK).to_le_bytes();
    // SAFETY: the template holds FRAME_TEMPLATE_LEN >= len bytes, the id 4; the helper checks
    // the frame.
    let stored = unsafe {
        bpf_xdp_store_bytes(ctx.ctx, 0, frame as *mut c_void, len as u32) == 0
            && bpf_xdp_store_bytes(
                ctx.ctx,
                (PAYLOAD_OFFSET + 8) as u32,
                id.as_ptr() as *mut c_void,
                4,
            ) == 0
    };
    if !stored {
        return xdp_action::XDP_ABORTED;
    }
    stats.sent += 1;
    xdp_action::XDP_TX
}

#[inline(always)]
fn le32(b: &[u8; REPLY_BUF], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Counts, times and checks a reply from the server port and drops it; passes every other
/// frame (ARP above all).
#[inline(always)]
pub fn count_reply(ctx: &XdpContext) -> u32 {
    let (Some(config), Some(stats), Some(buf)) = (
        LOADGEN_CONFIG.get(0),
        LOADGEN_STATS.get_ptr_mut(0),
        LOADGEN_BUF.get_ptr_mut(0),
    ) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: per-CPU map values, used by one program run at a time on this CPU.
    let (stats, buf) = unsafe { (&mut *stats, &mut (*buf).bytes) };
    let frame_len = ctx.data_end() - ctx.data();
    if frame_len < PAYLOAD_OFFSET + 12 {
        return xdp_action::XDP_PASS;
    }
    let n = frame_len.min(REPLY_BUF);
    let n = bounded_len::<REPLY_BUF>(n);
    // SAFETY: buf holds REPLY_BUF >= n bytes; the helper checks the frame.
    if unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, buf.as_mut_ptr() as *mut c_void, n as u32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let port = config.server_port.to_be_bytes();
    // IPv4 without options, UDP from the server port, the reply magic: the requests this
    // lab sends get such replies and nothing else looks like them.
    if buf[12..14] != [0x08, 0x00]
        || buf[14] != 0x45
        || buf[23] != 17
        || buf[34..36] != port
        || le32(buf, PAYLOAD_OFFSET) != REPLY_MAGIC
    {
        return xdp_action::XDP_PASS;
    }
    let status = u16::from_le_bytes([buf[PAYLOAD_OFFSET + 6], buf[PAYLOAD_OFFSET + 7]]) as usize;
    stats.replies[status & (NUM_STATUSES - 1)] += 1;
    let id = le32(buf, PAYLOAD_OFFSET + 8);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    stats.last_reply_ns = now;
    let latency = (now as u32).wrapping_sub(id) & STAMP_MASK;
    // Restated where the verifier sees it (LLVM drops a mask it can prove redundant).
    let bucket = opaque(latency_bucket(latency)) & (HIST_BUCKETS - 1);
    stats.hist[bucket] += 1;
    let udp_len = u16::from_be_bytes([buf[38], buf[39]]) as usize;
    let same = status < NUM_STATUSES
        && udp_len == 8 + config.reply_len as usize
        && PAYLOAD_OFFSET + udp_len - 8 <= n
        && matches_expected(buf, id >> CASE_SHIFT, config.reply_len as usize);
    if !same {
        stats.mismatches += 1;
    }
    xdp_action::XDP_DROP
}

/// Whether the reply in `buf` equals case `case`'s expected reply in its first `len` bytes,
/// request id (word 2) and model version (word 4, the server's push count) aside.
#[inline(always)]
fn matches_expected(buf: &[u8; REPLY_BUF], case: u32, len: usize) -> bool {
    let Some(expected) = LOADGEN_EXPECTED.get(case & (MAX_CASES as u32 - 1)) else {
        return false;
    };
    for (w, &want) in expected.words.iter().enumerate() {
        if 4 * w >= len {
            break;
        }
        if w == 2 || w == 4 {
            continue;
        }
        if le32(buf, PAYLOAD_OFFSET + 4 * w) != want {
            return false;
        }
    }
    true
}
