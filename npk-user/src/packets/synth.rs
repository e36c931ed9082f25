//! Synthetic Ethernet frames: every shape the parser handles (TCP/UDP/ICMP over IPv4 with
//! options and IPv6 with extension headers, VLAN tags) and every way a frame can be broken.

use npk_common::packet::{FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use crate::rng::Rng;

/// A frame's shape, chosen by [`random_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Valid,
    Truncated,
    Garbage,
}

/// Header knobs of one frame.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub key: FlowKey,
    pub ipv6: bool,
    pub vlan: Option<u16>,
    /// IPv4 option bytes (multiple of 4, at most 40) or, for IPv6, one extension header of
    /// this many bytes (multiple of 8) when non-zero.
    pub options: usize,
    pub tcp_flags: u8,
    pub ttl: u8,
    pub payload: usize,
}

impl FrameSpec {
    /// Serializes the frame with correct lengths (checksums are left zero: nothing here reads
    /// them).
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
        if let Some(vid) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
        }
        let proto = self.key.protocol;
        let l4_len = match proto {
            PROTO_TCP => 20,
            PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6 => 8,
            _ => 0,
        } + self.payload;
        let mut l4 = Vec::with_capacity(l4_len);
        match proto {
            PROTO_TCP => {
                l4.extend_from_slice(&self.key.src_port.to_be_bytes());
                l4.extend_from_slice(&self.key.dst_port.to_be_bytes());
                l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 5 << 4, self.tcp_flags]);
                l4.extend_from_slice(&29200u16.to_be_bytes());
                l4.extend_from_slice(&[0; 4]);
            }
            PROTO_UDP => {
                l4.extend_from_slice(&self.key.src_port.to_be_bytes());
                l4.extend_from_slice(&self.key.dst_port.to_be_bytes());
                l4.extend_from_slice(&(l4_len as u16).to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            PROTO_ICMP | PROTO_ICMPV6 => {
                let echo = if proto == PROTO_ICMP { 8 } else { 128 };
                l4.extend_from_slice(&[echo, 0, 0, 0, 0, 1, 0, 1]);
            }
            _ => {}
        }
        l4.extend((0..self.payload).map(|i| i as u8));
        if self.ipv6 {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let ext = self.options;
            let next = if ext > 0 { 60 } else { proto };
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[next, self.ttl]);
            f.extend_from_slice(&self.key.src);
            f.extend_from_slice(&self.key.dst);
            if ext > 0 {
                f.extend_from_slice(&[proto, (ext / 8 - 1) as u8]);
                f.extend(std::iter::repeat_n(1u8, ext - 2));
            }
        } else {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let ihl = 20 + self.options;
            f.push(0x40 | (ihl / 4) as u8);
            f.push(0);
            f.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, self.ttl, proto, 0, 0]);
            f.extend_from_slice(&self.key.src[12..]);
            f.extend_from_slice(&self.key.dst[12..]);
            f.extend(std::iter::repeat_n(1u8, self.options));
        }
        f.extend_from_slice(&l4);
        f
    }
}

/// An IPv4 address stored the way [`FlowKey`] stores it (IPv4-mapped).
pub fn v4_mapped(addr: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12..].copy_from_slice(&addr);
    a
}

/// `count` flows over TCP, UDP and ICMP, IPv4 and IPv6 (IPv6 keys use real IPv6 addresses;
/// IPv4 keys are IPv4-mapped), from a few dozen source hosts to a few dozen destinations, so
/// that hosts open many flows and services hear from many hosts.
pub fn flow_pool(rng: &mut Rng, count: usize) -> Vec<FlowKey> {
    let mut v6_hosts = [[0u8; 16]; 16];
    for h in &mut v6_hosts {
        rng.fill_bytes(h);
        h[0] = 0x20; // never IPv4-mapped
    }
    (0..count)
        .map(|i| {
            let protocol = [PROTO_TCP, PROTO_UDP, PROTO_ICMP][i % 3];
            let v6 = i % 4 == 3;
            let (src, dst) = if v6 {
                (v6_hosts[rng.below(8)], v6_hosts[8 + rng.below(8)])
            } else {
                (
                    v4_mapped([10, 0, 0, rng.below(24) as u8]),
                    v4_mapped([10, 1, 0, rng.below(24) as u8]),
                )
            };
            let ports = protocol != PROTO_ICMP;
            FlowKey {
                src,
                dst,
                src_port: if ports {
                    1024 + rng.below(60000) as u16
                } else {
                    0
                },
                dst_port: if ports {
                    [53, 80, 443, 22, 8080][i % 5]
                } else {
                    0
                },
                protocol: if v6 && protocol == PROTO_ICMP {
                    PROTO_ICMPV6
                } else {
                    protocol
                },
                _pad: [0; 3],
            }
        })
        .collect()
}

/// One frame: mostly valid packets of `flows`, plus VLAN tags, IP options, IPv6 extension
/// headers, truncated frames and garbage, none shorter than `min_len` bytes (at least 14: the
/// kernel's test runner, like every NIC, refuses frames shorter than an Ethernet header).
pub fn random_frame(rng: &mut Rng, flows: &[FlowKey], min_len: usize) -> (FrameKind, Vec<u8>) {
    let min_len = min_len.max(14);
    let key = flows[rng.below(flows.len())];
    let ipv6 = key.src[..10] != [0u8; 10];
    let spec = FrameSpec {
        key,
        ipv6,
        vlan: rng.bool(0.2).then(|| rng.below(4096) as u16),
        options: if rng.bool(0.3) {
            if ipv6 {
                8 * (1 + rng.below(3))
            } else {
                4 * rng.below(11)
            }
        } else {
            0
        },
        tcp_flags: [0x02, 0x12, 0x10, 0x18, 0x11, 0x04][rng.below(6)],
        ttl: rng.range_i64(1, 255) as u8,
        payload: rng.below(1200),
    };
    let roll = rng.below(100);
    if roll < 8 {
        let mut frame = spec.build();
        let cut = min_len + rng.below(frame.len().saturating_sub(min_len) + 1);
        frame.truncate(cut);
        (FrameKind::Truncated, frame)
    } else if roll < 14 {
        let mut frame = vec![0u8; min_len + rng.below(200)];
        rng.fill_bytes(&mut frame);
        if rng.bool(0.7) {
            // Claim IPv4/IPv6 so the garbage reaches the IP parser.
            let et: u16 = if rng.bool(0.5) { 0x0800 } else { 0x86dd };
            frame[12..14].copy_from_slice(&et.to_be_bytes());
        }
        (FrameKind::Garbage, frame)
    } else {
        (FrameKind::Valid, spec.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use npk_common::packet::parse;

    #[test]
    fn valid_frames_parse_back_to_their_flow() {
        let mut rng = Rng::new(3);
        let flows = flow_pool(&mut rng, 40);
        for _ in 0..2000 {
            let (kind, frame) = random_frame(&mut rng, &flows, 14);
            if kind == FrameKind::Valid {
                let h = parse(&frame[..]).expect("valid frame parses");
                assert!(flows.contains(&h.key), "{:?}", h.key);
            }
        }
    }
}
