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
// Frame::read masks offsets with MAX_HEADER_OFFSET - 1.
const _: () = assert!(MAX_HEADER_OFFSET.is_power_of_two());

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

    /// Copies the first bytes of an XDP frame with direct packet access, for kernels without
    /// `bpf_xdp_load_bytes` (< 5.18): whole 8-byte words while they fit, then the last bytes
    /// one by one. Every access is at a constant offset from a pointer checked against
    /// `data_end` where the verifier sees it.
    #[inline(always)]
    pub fn from_xdp_packet(ctx: &XdpContext) -> Option<Self> {
        let (start, end) = (ctx.data(), ctx.data_end());
        let (buf, len) = Self::window(end - start)?;
        let buf_bytes = buf as *mut u8;
        for word in 0..MAX_HEADER_OFFSET / 8 {
            // Opaque so that LLVM cannot fold the checks into a trip count the verifier
            // cannot relate to the packet.
            let at = crate::model::opaque(start + 8 * word);
            if at + 8 <= end {
                // SAFETY: at..at + 8 lies inside the packet (checked above) and inside the
                // buffer (8 * word < MAX_HEADER_OFFSET <= HEADER_BUF - 8).
                unsafe {
                    let w = core::ptr::read_unaligned(at as *const u64);
                    core::ptr::write_unaligned(buf_bytes.add(8 * word) as *mut u64, w);
                }
                continue;
            }
            // The frame ends inside this word.
            for byte in 0..7 {
                let p = crate::model::opaque(at + byte);
                if p + 1 > end {
                    break;
                }
                // SAFETY: p is inside the packet (checked above), 8 * word + byte inside the
                // buffer.
                unsafe { *buf_bytes.add(8 * word + byte) = *(p as *const u8) };
            }
            break;
        }
        Some(Self { buf, len })
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

    /// The copy an earlier [`HeaderBuf`] of `len` bytes left in the per-CPU buffer (for a
    /// global function, which gets scalars only; `len` is checked on every read).
    #[inline(always)]
    pub fn copied(len: usize) -> Option<Self> {
        let packet = PACKET.get_ptr_mut(0)?;
        // SAFETY: per-CPU map value.
        let buf = unsafe { &raw mut (*packet).buf };
        Some(Self { buf, len })
    }

    /// Bytes copied.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
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
        let len = crate::model::bounded_len::<MAX_HEADER_OFFSET>(len);
        Some((buf, len))
    }
}

impl Frame for HeaderBuf {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        if offset >= MAX_HEADER_OFFSET || offset + N > self.len {
            return None;
        }
        // The mask restates `offset < MAX_HEADER_OFFSET` on the register that indexes (the
        // value is unchanged): LLVM may test a copy of the offset reloaded from the stack, and
        // verifiers before 6.8 do not carry a bound from one fill of a slot to another (6.1
        // refused the IPv6 extension-header walk: "invalid access to map value").
        let offset = crate::model::opaque(offset) & (MAX_HEADER_OFFSET - 1);
        // SAFETY: offset < MAX_HEADER_OFFSET and N <= 16 keep the read inside the buffer.
        Some(unsafe {
            core::ptr::read_unaligned((self.buf as *const u8).add(offset) as *const [u8; N])
        })
    }
}
