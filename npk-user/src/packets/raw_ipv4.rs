//! IPv4 packets for raw sockets (`IPPROTO_RAW`: the caller writes the IP header): TCP SYNs,
//! UDP datagrams and ICMP echo requests with valid checksums, so the receiving stack treats
//! them like any other packet.

use std::net::Ipv4Addr;

use npk_common::packet::{PROTO_TCP, PROTO_UDP};

pub const TCP_SYN: u8 = 0x02;

/// The Internet checksum (RFC 1071) over the concatenation of `parts`, each of even length
/// except possibly the last.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (no options, don't fragment) followed by `l4`. The kernel fills in the
/// header checksum for raw sockets.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, ttl: u8, id: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(20 + l4.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, ttl, protocol, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(l4);
    p
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[..4].copy_from_slice(&src.octets());
    h[4..8].copy_from_slice(&dst.octets());
    h[9] = protocol;
    h[10..].copy_from_slice(&(len as u16).to_be_bytes());
    h
}

/// A TCP segment without payload; `options` is padded to a multiple of 4 bytes by the caller.
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub flags: u8,
    pub window: u16,
    pub options: &'a [u8],
}

impl TcpSegment<'_> {
    pub fn build(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let len = 20 + self.options.len();
        let mut t = Vec::with_capacity(len);
        t.extend_from_slice(&self.src_port.to_be_bytes());
        t.extend_from_slice(&self.dst_port.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&[0; 4]);
        t.push(((len / 4) as u8) << 4);
        t.push(self.flags);
        t.extend_from_slice(&self.window.to_be_bytes());
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(self.options);
        let sum = checksum(&[&pseudo_header(src, dst, PROTO_TCP, len), &t]);
        t[16..18].copy_from_slice(&sum.to_be_bytes());
        t
    }
}

pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let sum = match checksum(&[&pseudo_header(src, dst, PROTO_UDP, len), &u]) {
        0 => 0xffff, // 0 means "no checksum" in UDP
        s => s,
    };
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    u
}

pub fn icmp_echo(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let sum = checksum(&[&m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::features::FlowTable;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A packet with its checksum in place sums to zero.
    fn verifies(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> bool {
        let pseudo = pseudo_header(src, dst, proto, l4.len());
        checksum(&[&pseudo, l4]) == 0
    }

    #[test]
    fn checksums_verify_and_match_a_known_value() {
        // RFC 1071's example words sum to ddf2; the checksum is its complement.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            !0xddf2
        );
        assert_eq!(
            checksum(&[&[0xab]]),
            !0xab00,
            "odd tail is padded with zero"
        );
        let syn = TcpSegment {
            src_port: 40000,
            dst_port: 80,
            seq: 7,
            flags: TCP_SYN,
            window: 1024,
            options: &[2, 4, 5, 0xb4],
        }
        .build(A, B);
        assert!(verifies(A, B, PROTO_TCP, &syn));
        assert!(verifies(A, B, PROTO_UDP, &udp(A, B, 1, 2, b"odd")));
        assert_eq!(checksum(&[&icmp_echo(1, 2, b"hello")]), 0);
    }

    #[test]
    fn packets_parse_to_the_features_they_were_built_with() {
        const TCP_SYN_ACK: u8 = TCP_SYN | 0x10;
        let segment = TcpSegment {
            src_port: 40000,
            dst_port: 80,
            seq: 7,
            flags: TCP_SYN_ACK,
            window: 1024,
            options: &[2, 4, 5, 0xb4],
        }
        .build(A, B);
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&ipv4(A, B, PROTO_TCP, 64, 1, &segment));
        let (key, f) = FlowTable::new().observe(&frame, 0).unwrap();
        assert_eq!((key.src_port, key.dst_port), (40000, 80));
        // ip_len, header len, flags, payload (a SYN-ACK: the flow is not half open, so its
        // sizes are features)
        assert_eq!([f[2], f[3], f[6], f[7]], [44, 20, TCP_SYN_ACK as i32, 0]);
    }
}
