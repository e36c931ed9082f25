//! [`Frame`] over a per-CPU copy of the frame's first bytes. Parsing packet memory directly
//! leaves the verifier to track every variable offset (IP options, IPv6 extension headers)
//! against `data_end`, which LLVM's merged bounds checks defeat; a buffer of known size with
//! offsets below MAX_HEADER_OFFSET is simple to prove.

use aya_ebpf::{
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use npk_common::packet::{Frame, MAX_HEADER_OFFSET};

use crate::maps::PACKET;

/// Room past the window so that a read of up to 16 bytes at any offset below it stays inside.
pub const HEADER_BUF: usize = MAX_HEADER_OFFSET + 16;

pub struct HeaderBuf {
    buf: *const [u8; HEADER_BUF],
    /// Bytes copied: min(frame length, MAX_HEADER_OFFSET).
    len: usize,
}

impl HeaderBuf {
    /// Copies the first bytes of an XDP frame.
    #[inline(always)]
    pub fn from_xdp(ctx: &XdpContext) -> Option<Self> {
        let frame_len = ctx.data_end() - ctx.data();
        let (buf, len) = Self::window(frame_len)?;
        // SAFETY: buf has HEADER_BUF >= len bytes; the helper checks the frame bounds.
        let r = unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, buf as *mut _, len as u32) };
        (r == 0).then_some(Self { buf, len })
    }

    /// Copies the first bytes of a socket buffer (paged data included).
    #[inline(always)]
    pub fn from_skb(ctx: &TcContext) -> Option<Self> {
        let (buf, len) = Self::window(ctx.len() as usize)?;
        // SAFETY: as above.
        let r =
            unsafe { bpf_skb_load_bytes(ctx.skb.skb as *const _, 0, buf as *mut _, len as u32) };
        (r == 0).then_some(Self { buf, len })
    }

    #[inline(always)]
    fn window(frame_len: usize) -> Option<(*mut [u8; HEADER_BUF], usize)> {
        let packet = PACKET.get_ptr_mut(0)?;
        // SAFETY: per-CPU map value.
        let buf = unsafe { &raw mut (*packet).buf };
        // The helpers refuse a zero length; an empty frame is just "truncated".
        if frame_len == 0 {
            return None;
        }
        let len = frame_len.min(MAX_HEADER_OFFSET);
        // Restate 1 <= len <= MAX_HEADER_OFFSET in a form the verifier tracks (LLVM folds
        // the checks above into one it cannot follow); the value is unchanged.
        let len = ((crate::model::opaque(len) - 1) & (MAX_HEADER_OFFSET - 1)) + 1;
        Some((buf, len))
    }
}

impl Frame for HeaderBuf {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        if offset >= MAX_HEADER_OFFSET || offset + N > self.len {
            return None;
        }
        // SAFETY: offset < MAX_HEADER_OFFSET and N <= 16 keep the read inside the buffer.
        Some(unsafe {
            core::ptr::read_unaligned((self.buf as *const u8).add(offset) as *const [u8; N])
        })
    }
}
