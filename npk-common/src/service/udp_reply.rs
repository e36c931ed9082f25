//! The inference server's frame handling: finding a request to the served UDP port in a
//! frame's first bytes ([`parse_request`]) and turning the request's Ethernet, IP and UDP
//! headers into the reply's ([`rewrite_headers`]).
//!
//! Both work on fixed-size buffers with lengths: npk-ebpf's `npk_serve` copies the frame's
//! first [`FRAME_WINDOW`] bytes into per-CPU map memory (variable offsets, a VLAN tag or IPv4
//! options, then only index that buffer, which the verifier follows), the host tests copy a
//! byte slice into an array the same way. Every index is bounds-checked or masked, so neither
//! side can read or write outside the buffers, whatever the frame holds.

use crate::{
    packet::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, PROTO_UDP},
    service::wire::MAX_REPLY_LEN,
};

/// Frame bytes copied for parsing: Ethernet, one VLAN tag, the longest IPv4 header (60) and
/// UDP (8) end by byte 86.
pub const FRAME_WINDOW: usize = 128;
/// The frame buffer has room past the window so that masked offsets stay inside it.
pub const FRAME_BUF: usize = 2 * FRAME_WINDOW;
/// Where [`rewrite_headers`] builds the UDP header in the UDP buffer: the checksum
/// pseudo-header (12 bytes for IPv4, 40 for IPv6) ends right before it, the reply payload
/// follows it at [`PAYLOAD_AT`].
pub const UDP_AT: usize = 40;
pub const PAYLOAD_AT: usize = UDP_AT + 8;
/// The UDP buffer: pseudo-header, UDP header and reply, contiguous for one checksum call.
pub const UDP_BUF: usize = 320;
/// TTL / hop limit of every reply.
pub const REPLY_TTL: u8 = 64;

/// The rewrite masks the reply length with 127 and sums whole 32-bit words.
const _: () = assert!(MAX_REPLY_LEN <= 127 && PAYLOAD_AT + 128 <= UDP_BUF);

/// A request's position in the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Offsets of the IP and UDP headers.
    pub l3: usize,
    pub l4: usize,
    pub ipv6: bool,
    /// UDP payload bytes (from the UDP length field).
    pub payload_len: usize,
}

impl Request {
    /// Offset of the request's UDP payload in the frame.
    #[inline(always)]
    pub fn payload_offset(&self) -> usize {
        self.l4 + 8
    }

    /// Length of the reply frame carrying `reply_len` payload bytes: the request's headers up
    /// to UDP, then UDP and the payload (any Ethernet padding of the request is cut).
    #[inline(always)]
    pub fn reply_frame_len(&self, reply_len: usize) -> usize {
        self.l4 + 8 + reply_len
    }
}

/// Why a frame is not a request to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not UDP to the served port (or too short to tell): for the stack.
    NotOurs,
    /// UDP to the served port with lengths that do not fit the IP packet or the frame.
    Malformed,
    /// To the served port perhaps, in a form the server does not parse: IP fragments, IPv6
    /// extension headers (the stack reassembles or walks them and a userspace socket answers).
    Unsupported,
}

#[inline(always)]
fn be16(b: &[u8; FRAME_BUF], len: usize, off: usize) -> Option<u16> {
    if off + 2 > len {
        return None;
    }
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

#[inline(always)]
fn byte(b: &[u8; FRAME_BUF], len: usize, off: usize) -> Option<u8> {
    if off >= len {
        return None;
    }
    b.get(off).copied()
}

/// Finds a UDP datagram to `port` in the first `len` bytes (the copied window) of a frame of
/// `frame_len` bytes: Ethernet, one 802.1Q/802.1ad tag, IPv4 (options included) or IPv6
/// without extension headers.
#[inline(always)]
pub fn parse_request(
    b: &[u8; FRAME_BUF],
    len: usize,
    frame_len: usize,
    port: u16,
) -> Result<Request, Refusal> {
    let short = Refusal::NotOurs; // a frame too short for its headers cannot be a request
    let mut l3 = 14;
    let mut ethertype = be16(b, len, 12).ok_or(Refusal::NotOurs)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16(b, len, 16).ok_or(Refusal::NotOurs)?;
        l3 = 18;
    }
    let (l4, ip_end, ipv6) = match ethertype {
        ETH_P_IP => {
            let vihl = byte(b, len, l3).ok_or(short)?;
            let ihl = (vihl & 0x0f) as usize * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(Refusal::NotOurs); // the stack's problem, not a request
            }
            if byte(b, len, l3 + 9).ok_or(Refusal::NotOurs)? != PROTO_UDP {
                return Err(Refusal::NotOurs);
            }
            let frag = be16(b, len, l3 + 6).ok_or(Refusal::NotOurs)?;
            if frag & 0x3fff != 0 {
                return Err(Refusal::Unsupported); // MF set or a non-zero offset
            }
            let total = be16(b, len, l3 + 2).ok_or(Refusal::NotOurs)? as usize;
            (l3 + ihl, l3 + total, false)
        }
        ETH_P_IPV6 => {
            if byte(b, len, l3).ok_or(Refusal::NotOurs)? >> 4 != 6 {
                return Err(Refusal::NotOurs);
            }
            match byte(b, len, l3 + 6).ok_or(Refusal::NotOurs)? {
                PROTO_UDP => {}
                // Hop-by-hop, routing, fragment, destination options.
                0 | 43 | 44 | 60 => return Err(Refusal::Unsupported),
                _ => return Err(Refusal::NotOurs),
            }
            let payload = be16(b, len, l3 + 4).ok_or(Refusal::NotOurs)? as usize;
            (l3 + 40, l3 + 40 + payload, true)
        }
        _ => return Err(Refusal::NotOurs),
    };
    if be16(b, len, l4 + 2).ok_or(Refusal::NotOurs)? != port {
        return Err(Refusal::NotOurs);
    }
    let udp_len = be16(b, len, l4 + 4).ok_or(Refusal::Malformed)? as usize;
    // Ethernet padding may follow the IP packet; the IP and UDP lengths must fit the frame.
    if udp_len < 8 || l4 + udp_len > ip_end || ip_end > frame_len {
        return Err(Refusal::Malformed);
    }
    Ok(Request {
        l3,
        l4,
        ipv6,
        payload_len: udp_len - 8,
    })
}

/// The one's-complement sum the checksums need. The kernel has a helper for it
/// (`bpf_csum_diff`); [`SoftSum`] computes the same in software.
pub trait OnesSum {
    /// The sum of the `len` bytes of `buf` from `at` (`len` a multiple of 4) as little-endian
    /// words, folded to 16 bits and not complemented: stored little-endian, its complement is
    /// the checksum field's bytes.
    fn ones_sum<const N: usize>(buf: &mut [u8; N], at: usize, len: usize) -> u16;
}

/// Folds a 32-bit one's-complement partial sum to 16 bits.
#[inline(always)]
pub fn fold(sum: u32) -> u16 {
    let mut s = sum as u64;
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// [`OnesSum`] in software: 32-bit words added with end-around carry, as the kernel's
/// `csum_partial` behind `bpf_csum_diff` adds them. Bytes outside `buf` sum as zero.
pub struct SoftSum;

impl OnesSum for SoftSum {
    fn ones_sum<const N: usize>(buf: &mut [u8; N], at: usize, len: usize) -> u16 {
        let mut sum = 0u32;
        for word in buf.get(at..at + len).unwrap_or(&[]).chunks_exact(4) {
            let (s, carry) =
                sum.overflowing_add(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
            sum = s + carry as u32;
        }
        fold(sum)
    }
}

#[inline(always)]
fn swap<const N: usize>(b: &mut [u8; FRAME_BUF], a: usize, c: usize) {
    for i in 0..N {
        if let (Some(&x), Some(&y)) = (b.get(a + i), b.get(c + i)) {
            if let Some(p) = b.get_mut(a + i) {
                *p = y;
            }
            if let Some(p) = b.get_mut(c + i) {
                *p = x;
            }
        }
    }
}

#[inline(always)]
fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Turns the headers of request `p` in `frame` into the reply's: MAC and IP addresses swapped,
/// IP length for `reply_len` payload bytes (at most [`MAX_REPLY_LEN`], a multiple of 4), TTL or
/// hop limit [`REPLY_TTL`], the IPv4 header checksum; everything else (VLAN tag, IPv4 options,
/// identification, DF) kept. Builds the UDP header in `udp[UDP_AT..]` (ports swapped, length,
/// checksum over the pseudo-header and the reply already at `udp[PAYLOAD_AT..]`).
///
/// The reply frame is then `frame[..p.l4]` followed by `udp[UDP_AT..UDP_AT + 8 + reply_len]`.
// Indexed copies at constant offsets: the form the kernel's verifier has accepted.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub fn rewrite_headers<S: OnesSum>(
    frame: &mut [u8; FRAME_BUF],
    udp: &mut [u8; UDP_BUF],
    p: &Request,
    reply_len: usize,
) {
    let l3 = p.l3 & 31;
    let l4 = p.l4 & (FRAME_WINDOW - 1);
    let reply_len = reply_len & 127;
    let udp_len = (8 + reply_len) as u16;
    swap::<6>(frame, 0, 6);
    let pseudo_at = if p.ipv6 {
        swap::<16>(frame, l3 + 8, l3 + 24);
        put16(frame, l3 + 4, udp_len);
        if let Some(h) = frame.get_mut(l3 + 7) {
            *h = REPLY_TTL;
        }
        // Pseudo-header: source, destination, upper-layer length (32 bits), 3 zeros, 17.
        for i in 0..32 {
            udp[i] = frame.get(l3 + 8 + i).copied().unwrap_or(0);
        }
        udp[32..40].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, PROTO_UDP]);
        put16(udp, 34, udp_len);
        0
    } else {
        let ihl = p.l4.wrapping_sub(p.l3) & 63;
        swap::<4>(frame, l3 + 12, l3 + 16);
        put16(frame, l3 + 2, (ihl + 8 + reply_len) as u16);
        if let Some(t) = frame.get_mut(l3 + 8) {
            *t = REPLY_TTL;
        }
        put16(frame, l3 + 10, 0);
        let sum = !S::ones_sum(frame, l3, ihl);
        if let Some(s) = frame.get_mut(l3 + 10..l3 + 12) {
            s.copy_from_slice(&sum.to_le_bytes());
        }
        // Pseudo-header: source, destination, zero, 17, UDP length.
        for i in 0..8 {
            udp[28 + i] = frame.get(l3 + 12 + i).copied().unwrap_or(0);
        }
        udp[36] = 0;
        udp[37] = PROTO_UDP;
        put16(udp, 38, udp_len);
        28
    };
    // Ports swapped, length, checksum zero while summing.
    for i in 0..2 {
        udp[UDP_AT + i] = frame.get(l4 + 2 + i).copied().unwrap_or(0);
        udp[UDP_AT + 2 + i] = frame.get(l4 + i).copied().unwrap_or(0);
    }
    put16(udp, UDP_AT + 4, udp_len);
    put16(udp, UDP_AT + 6, 0);
    let summed = (UDP_AT - pseudo_at + 8 + reply_len) & 0xfc;
    let mut sum = !S::ones_sum(udp, pseudo_at, summed);
    if sum == 0 {
        sum = 0xffff; // 0 means "no checksum" in UDP
    }
    udp[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&sum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::{vec, vec::Vec};

    const PORT: u16 = 7878;

    /// What npk_serve does with `frame` (serve.rs), on the host: copy the window, parse,
    /// place the reply, rewrite, assemble. Returns the payload length and the reply frame.
    fn serve_frame(frame: &[u8], port: u16, reply: &[u8]) -> Result<(usize, Vec<u8>), Refusal> {
        let mut buf = [0u8; FRAME_BUF];
        let copied = frame.len().min(FRAME_WINDOW);
        buf[..copied].copy_from_slice(&frame[..copied]);
        let request = parse_request(&buf, copied, frame.len(), port)?;
        let mut udp = [0u8; UDP_BUF];
        udp[PAYLOAD_AT..PAYLOAD_AT + reply.len()].copy_from_slice(reply);
        rewrite_headers::<SoftSum>(&mut buf, &mut udp, &request, reply.len());
        let mut out = buf[..request.l4].to_vec();
        out.extend_from_slice(&udp[UDP_AT..UDP_AT + 8 + reply.len()]);
        assert_eq!(out.len(), request.reply_frame_len(reply.len()));
        assert_eq!(request.payload_offset(), request.l4 + 8);
        Ok((request.payload_len, out))
    }

    /// RFC 1071 over big-endian 16-bit words, folded, not complemented.
    fn rfc1071(data: &[u8]) -> u16 {
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The server's behaviour written out plainly on the whole frame.
    fn reference(frame: &[u8], port: u16, reply: &[u8]) -> Result<(usize, Vec<u8>), Refusal> {
        use Refusal::*;
        let be16 = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let (l3, ethertype) = match be16(12) {
            Some(0x8100 | 0x88a8) => (18, be16(16)),
            other => (14, other),
        };
        let (l4, ip_end, ipv6) = match ethertype.ok_or(NotOurs)? {
            0x0800 => {
                let vihl = *frame.get(l3).ok_or(NotOurs)?;
                let ihl = usize::from(vihl & 0xf) * 4;
                if vihl >> 4 != 4 || ihl < 20 || frame.get(l3 + 9) != Some(&17) {
                    return Err(NotOurs);
                }
                if be16(l3 + 6).ok_or(NotOurs)? & 0x3fff != 0 {
                    return Err(Unsupported);
                }
                (
                    l3 + ihl,
                    l3 + usize::from(be16(l3 + 2).ok_or(NotOurs)?),
                    false,
                )
            }
            0x86dd => {
                if frame.get(l3).ok_or(NotOurs)? >> 4 != 6 {
                    return Err(NotOurs);
                }
                match frame.get(l3 + 6) {
                    Some(17) => {}
                    Some(0 | 43 | 44 | 60) => return Err(Unsupported),
                    _ => return Err(NotOurs),
                }
                let payload = usize::from(be16(l3 + 4).ok_or(NotOurs)?);
                (l3 + 40, l3 + 40 + payload, true)
            }
            _ => return Err(NotOurs),
        };
        if be16(l4 + 2) != Some(port) {
            return Err(NotOurs);
        }
        let request_udp_len = usize::from(be16(l4 + 4).ok_or(Malformed)?);
        if request_udp_len < 8 || l4 + request_udp_len > ip_end || ip_end > frame.len() {
            return Err(Malformed);
        }

        let mut out = frame[..l4].to_vec();
        out[..6].copy_from_slice(&frame[6..12]);
        out[6..12].copy_from_slice(&frame[..6]);
        let udp_len = 8 + reply.len();
        let mut pseudo = Vec::new();
        if ipv6 {
            out[l3 + 8..l3 + 24].copy_from_slice(&frame[l3 + 24..l3 + 40]);
            out[l3 + 24..l3 + 40].copy_from_slice(&frame[l3 + 8..l3 + 24]);
            out[l3 + 4..l3 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
            out[l3 + 7] = 64;
            pseudo.extend_from_slice(&out[l3 + 8..l3 + 40]);
            pseudo.extend_from_slice(&(udp_len as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 17]);
        } else {
            out[l3 + 12..l3 + 16].copy_from_slice(&frame[l3 + 16..l3 + 20]);
            out[l3 + 16..l3 + 20].copy_from_slice(&frame[l3 + 12..l3 + 16]);
            out[l3 + 2..l3 + 4].copy_from_slice(&((l4 - l3 + udp_len) as u16).to_be_bytes());
            out[l3 + 8] = 64;
            out[l3 + 10..l3 + 12].fill(0);
            let sum = !rfc1071(&out[l3..l4]);
            out[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
            pseudo.extend_from_slice(&out[l3 + 12..l3 + 20]);
            pseudo.extend_from_slice(&[0, 17]);
            pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        }
        let mut udp = Vec::new();
        udp.extend_from_slice(&frame[l4 + 2..l4 + 4]);
        udp.extend_from_slice(&frame[l4..l4 + 2]);
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(reply);
        let mut summed = pseudo;
        summed.extend_from_slice(&udp);
        let sum = match !rfc1071(&summed) {
            0 => 0xffff,
            s => s,
        };
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(&udp);
        Ok((request_udp_len - 8, out))
    }

    /// Knobs of a well-formed request frame.
    #[derive(Clone, Debug)]
    struct Shape {
        /// 0: untagged, else the tag's EtherType.
        tag: u16,
        ipv6: bool,
        /// IPv4 option bytes (a multiple of 4, at most 40).
        options: usize,
        /// Flags and fragment offset (DF 0x4000, MF 0x2000).
        fragment: u16,
        dst_port: u16,
        payload: Vec<u8>,
        /// Ethernet padding after the IP packet.
        padding: usize,
        /// Added to the IP length field (IPv4 total length, IPv6 payload length) and to the
        /// UDP length field.
        ip_len_error: i16,
        udp_len_error: i16,
    }

    fn request_frame(s: &Shape) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa];
        if s.tag != 0 {
            f.extend_from_slice(&s.tag.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x07]);
        }
        let udp_len = (8 + s.payload.len()) as u16;
        let ip_len = |len: u16| len.wrapping_add_signed(s.ip_len_error).to_be_bytes();
        if s.ipv6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0x01, 0x23, 0x45]);
            f.extend_from_slice(&ip_len(udp_len));
            f.extend_from_slice(&[17, 33]);
            f.extend((1..=16).map(|i| 0xf0 | i));
            f.extend((1..=16).map(|i| 0xe0 | i));
        } else {
            let ihl = 20 + s.options;
            f.extend_from_slice(&[0x08, 0x00, 0x40 | (ihl / 4) as u8, 0]);
            f.extend_from_slice(&ip_len(ihl as u16 + udp_len));
            f.extend_from_slice(&[0x12, 0x34]);
            f.extend_from_slice(&s.fragment.to_be_bytes());
            f.extend_from_slice(&[33, 17, 0xab, 0xcd, 10, 0, 0, 1]);
            f.extend_from_slice(&[10, 0, 0, 2]);
            f.extend((0..s.options).map(|i| i as u8));
        }
        f.extend_from_slice(&40000u16.to_be_bytes());
        f.extend_from_slice(&s.dst_port.to_be_bytes());
        f.extend_from_slice(&udp_len.wrapping_add_signed(s.udp_len_error).to_be_bytes());
        f.extend_from_slice(&[0x55, 0xaa]);
        f.extend_from_slice(&s.payload);
        f.extend(core::iter::repeat_n(0, s.padding));
        f
    }

    prop_compose! {
        fn shape()(
            tag in prop_oneof![Just(0u16), Just(0x8100), Just(0x88a8)],
            ipv6 in any::<bool>(),
            option_words in 0usize..=10,
            fragment in prop_oneof![
                3 => Just(0x4000u16),
                2 => Just(0),
                1 => Just(0x8000),
                1 => Just(0x2000),
                1 => 1u16..0x2000,
            ],
            dst_port in prop_oneof![4 => Just(PORT), 1 => any::<u16>()],
            payload in proptest::collection::vec(any::<u8>(), 0..120),
            padding in prop_oneof![Just(0usize), 0usize..24],
            ip_len_error in prop_oneof![3 => Just(0i16), 1 => -9i16..=9],
            udp_len_error in prop_oneof![3 => Just(0i16), 1 => -9i16..=9],
        ) -> Shape {
            Shape {
                tag,
                ipv6,
                options: 4 * option_words,
                fragment,
                dst_port,
                payload,
                padding,
                ip_len_error,
                udp_len_error,
            }
        }
    }

    /// A reply of a length the server sends: a multiple of 4, at most MAX_REPLY_LEN.
    fn reply() -> impl Strategy<Value = Vec<u8>> {
        (0..=MAX_REPLY_LEN / 4)
            .prop_flat_map(|words| proptest::collection::vec(any::<u8>(), 4 * words))
    }

    fn shape_v4(payload: usize) -> Shape {
        Shape {
            tag: 0,
            ipv6: false,
            options: 0,
            fragment: 0x4000,
            dst_port: PORT,
            payload: vec![7; payload],
            padding: 0,
            ip_len_error: 0,
            udp_len_error: 0,
        }
    }

    #[test]
    fn soft_sum_gives_the_textbook_ipv4_checksum() {
        // RFC 1071 worked example (Wikipedia's "IPv4 header checksum"): checksum 0xb861.
        let mut header = [0u8; 20];
        header.copy_from_slice(&[
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ]);
        assert_eq!(
            (!SoftSum::ones_sum(&mut header, 0, 20)).to_le_bytes(),
            [0xb8, 0x61]
        );
    }

    #[test]
    fn requests_of_every_shape_become_replies_with_valid_checksums() {
        for tag in [0, 0x8100, 0x88a8] {
            for ipv6 in [false, true] {
                let s = Shape {
                    tag,
                    ipv6,
                    options: if ipv6 { 0 } else { 12 },
                    padding: 6,
                    ..shape_v4(40)
                };
                let frame = request_frame(&s);
                let (payload_len, out) = serve_frame(&frame, PORT, &[9; 32]).unwrap();
                assert_eq!(payload_len, 40);
                let l3 = if tag == 0 { 14 } else { 18 };
                let l4 = if ipv6 { l3 + 40 } else { l3 + 32 };
                assert_eq!(out.len(), l4 + 8 + 32, "padding cut, reply carried");
                assert_eq!((&out[..6], &out[6..12]), (&frame[6..12], &frame[..6]));
                assert_eq!(&out[12..l3], &frame[12..l3], "VLAN tag kept");
                let pseudo = if ipv6 {
                    assert_eq!(out[l3 + 7], REPLY_TTL);
                    assert_eq!(&out[l3 + 8..l3 + 24], &frame[l3 + 24..l3 + 40]);
                    let mut p = out[l3 + 8..l3 + 40].to_vec();
                    p.extend_from_slice(&[0, 0, 0, 40, 0, 0, 0, 17]);
                    p
                } else {
                    assert_eq!(rfc1071(&out[l3..l4]), 0xffff, "IPv4 header checksum");
                    assert_eq!(&out[l3 + 20..l4], &frame[l3 + 20..l4], "options kept");
                    let mut p = out[l3 + 12..l3 + 20].to_vec();
                    p.extend_from_slice(&[0, 17, 0, 40]);
                    p
                };
                assert_eq!(&out[l4..l4 + 4], &[0x1e, 0xc6, 0x9c, 0x40], "ports swapped");
                let mut summed = pseudo;
                summed.extend_from_slice(&out[l4..]);
                assert_eq!(rfc1071(&summed), 0xffff, "UDP checksum");
            }
        }
    }

    #[test]
    fn fragments_and_extension_headers_are_unsupported() {
        for (at, value) in [(20, 0x20), (21, 0x01), (20, 0x1f)] {
            let mut frame = request_frame(&shape_v4(8));
            frame[at] = value; // MF, or a fragment offset
            assert_eq!(serve_frame(&frame, PORT, &[]), Err(Refusal::Unsupported));
        }
        for next in [0, 43, 44, 60] {
            let mut frame = request_frame(&Shape {
                ipv6: true,
                ..shape_v4(8)
            });
            frame[20] = next;
            assert_eq!(serve_frame(&frame, PORT, &[]), Err(Refusal::Unsupported));
        }
    }

    #[test]
    fn lengths_past_the_ip_packet_or_the_frame_are_malformed() {
        let frame = request_frame(&shape_v4(8));
        let mut udp_too_long = frame.clone();
        udp_too_long[39] += 1;
        let mut udp_too_short = frame.clone();
        udp_too_short[38..40].copy_from_slice(&7u16.to_be_bytes());
        let mut ip_too_long = frame.clone();
        ip_too_long[17] += 1;
        for f in [&udp_too_long, &udp_too_short, &ip_too_long] {
            assert_eq!(serve_frame(f, PORT, &[]), Err(Refusal::Malformed));
        }
        assert_eq!(
            serve_frame(&frame[..frame.len() - 1], PORT, &[]),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn other_ports_protocols_and_short_frames_are_not_ours() {
        let frame = request_frame(&shape_v4(8));
        assert_eq!(serve_frame(&frame, PORT + 1, &[]), Err(Refusal::NotOurs));
        let mut tcp = frame.clone();
        tcp[23] = 6;
        assert_eq!(serve_frame(&tcp, PORT, &[]), Err(Refusal::NotOurs));
        for len in 0..38 {
            assert_eq!(serve_frame(&frame[..len], PORT, &[]), Err(Refusal::NotOurs));
        }
    }

    proptest! {
        #[test]
        fn the_server_agrees_with_the_reference_on_mutated_requests(
            s in shape(),
            edits in proptest::collection::vec((0usize..90, any::<u8>()), 0..4),
            cut in proptest::option::of(0usize..200),
            reply in reply(),
        ) {
            let mut frame = request_frame(&s);
            for (at, value) in edits {
                if let Some(b) = frame.get_mut(at) {
                    *b = value;
                }
            }
            if let Some(cut) = cut {
                frame.truncate(cut);
            }
            prop_assert_eq!(serve_frame(&frame, PORT, &reply), reference(&frame, PORT, &reply));
        }

        #[test]
        fn the_server_agrees_with_the_reference_on_any_bytes(
            frame in proptest::collection::vec(any::<u8>(), 0..300),
            port in any::<u16>(),
            reply in reply(),
        ) {
            prop_assert_eq!(serve_frame(&frame, port, &reply), reference(&frame, port, &reply));
        }

        #[test]
        fn any_request_and_length_stay_inside_the_buffers(
            frame in proptest::collection::vec(any::<u8>(), FRAME_BUF),
            l3 in any::<usize>(),
            l4 in any::<usize>(),
            ipv6 in any::<bool>(),
            reply_len in any::<usize>(),
        ) {
            // No panic even for positions parse_request never returns.
            let mut buf: [u8; FRAME_BUF] = frame.try_into().unwrap();
            let mut udp = [0u8; UDP_BUF];
            let request = Request { l3, l4, ipv6, payload_len: 0 };
            rewrite_headers::<SoftSum>(&mut buf, &mut udp, &request, reply_len);
        }
    }
}
