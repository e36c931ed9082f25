//! Whom an npk server answers: the address rules, written once for both servers.
//!
//! A reply goes back to the request's source. A source that names no single host (broadcast,
//! multicast, 0.0.0.0, ::, the subnet's broadcast) or this host from outside (loopback) would
//! send the reply where nobody asked; a request to an address that is not the host's own (the
//! limited or a subnet broadcast, a multicast group) would be answered by every server that
//! hears it. The kernel's stack drops such datagrams before a socket sees them (martian
//! sources) or delivers them to wildcard sockets only; these rules keep npk_serve, which sees
//! frames before the stack, and the userspace servers to one host's unicast conversations.
//!
//! npk-ebpf's `npk_serve` applies [`check_frame`] to each request frame with the served
//! interface's addresses (npk_common::service::wire::ServeConfig); the userspace servers apply
//! [`check_peer`] to each datagram's source and destination (IP_PKTINFO) with the host's.

use bytemuck::{Pod, Zeroable};

use crate::service::udp_reply::{FRAME_BUF, Request};

/// Interface addresses the kernel server's configuration holds.
pub const MAX_IF_ADDRS: usize = 8;

const FAMILY_NONE: u8 = 0;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// One address of the host, with its prefix length.
///
/// # Layout
/// 20 bytes: the address (IPv4 in bytes 0..4, the rest zero), the family (4, 6, or 0 for an
/// unused entry), the prefix length, 2 bytes of padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct IfAddr {
    pub addr: [u8; 16],
    pub family: u8,
    pub prefix_len: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<IfAddr>() == 20);

impl IfAddr {
    /// An unused entry.
    pub const NONE: Self = Self {
        addr: [0; 16],
        family: FAMILY_NONE,
        prefix_len: 0,
        _pad: [0; 2],
    };

    pub fn v4(addr: [u8; 4], prefix_len: u8) -> Self {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&addr);
        Self {
            addr: a,
            family: FAMILY_V4,
            prefix_len,
            _pad: [0; 2],
        }
    }

    pub fn v6(addr: [u8; 16], prefix_len: u8) -> Self {
        Self {
            addr,
            family: FAMILY_V6,
            prefix_len,
            _pad: [0; 2],
        }
    }

    /// The address; `None` for an unused entry.
    pub fn ip(&self) -> Option<core::net::IpAddr> {
        let a = &self.addr;
        match self.family {
            FAMILY_V4 => Some(core::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()),
            FAMILY_V6 => Some(core::net::Ipv6Addr::from(*a).into()),
            _ => None,
        }
    }
}

/// Why a request is not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRefusal {
    /// The source (IP or MAC) is not one host's unicast address.
    Source,
    /// The destination (IP or MAC) is not a unicast address of this host's.
    Destination,
}

#[inline(always)]
fn v4(b: &[u8; 16]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// 1 when `x` is 0, else 0, without a branch. The opaque value sits between the `or` and the
/// shift: LLVM reads `(x | -x) >> 63` as `x != 0`, which BPF (no set-on-compare) can only
/// compute with a branch, and every such branch doubled the paths the verifier walked here
/// (6.1 refused npk_serve at 1,000,001 instructions). Not npk_common::packet's `nonzero`,
/// whose branches the classifier's verifier walks better (see there).
#[inline(always)]
fn zero(x: u64) -> u64 {
    1 - (core::hint::black_box(x | x.wrapping_neg()) >> 63)
}

/// 1 when the first `N` bytes of `a` and `b` are equal, else 0; no call to memcmp (none in a
/// kernel program) and no branch.
#[inline(always)]
fn same<const N: usize>(a: &[u8; 16], b: &[u8; 16]) -> u64 {
    let mut diff = 0u64;
    for i in 0..N {
        diff |= u64::from(a[i] ^ b[i]);
    }
    zero(diff)
}

const LOOPBACK6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const MAPPED_PREFIX: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];

/// Checks a datagram from `src` to `dst` (IPv4 in the first 4 bytes of each when `!ipv6`)
/// against the host's addresses `local`.
///
/// Refused sources: IPv4 0.0.0.0/8, 224.0.0.0/4, 255.255.255.255, the broadcast address of a
/// subnet in `local` (prefixes up to /30), 127.0.0.0/8 unless the destination is loopback too;
/// IPv6 ::, ff00::/8, ::ffff:0:0/96 (IPv4-mapped), ::1 unless the destination is ::1.
/// Refused destinations: anything but an address in `local` of the same family, except
/// loopback to loopback.
///
/// Masks, not branches, over the addresses: in the kernel each branch multiplies the paths
/// the verifier walks (npk_serve's check went past its million instructions with them).
#[inline(always)]
pub fn check_peer(
    ipv6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    local: &[IfAddr],
) -> Result<(), PeerRefusal> {
    let (bad_source, own, loopback_pair) = if ipv6 {
        let mut own = 0;
        for a in local {
            own |= zero(u64::from(a.family ^ FAMILY_V6)) & same::<16>(&a.addr, dst);
        }
        let (src_loopback, dst_loopback) =
            (same::<16>(src, &LOOPBACK6), same::<16>(dst, &LOOPBACK6));
        let bad = same::<16>(src, &[0; 16])
            | same::<12>(src, &MAPPED_PREFIX)
            | zero(u64::from(src[0] ^ 0xff))
            | (src_loopback & (1 - dst_loopback));
        (bad, own, src_loopback)
    } else {
        let (s, d) = (v4(src), v4(dst));
        let (mut own, mut subnet_broadcast) = (0, 0);
        for a in local {
            let is_v4 = zero(u64::from(a.family ^ FAMILY_V4));
            let addr = v4(&a.addr);
            own |= is_v4 & zero(addr ^ d);
            // The host bits of a /31 or /32 are addresses, not a broadcast (RFC 3021).
            let has_broadcast = zero((u64::from(a.prefix_len) + 1) >> 5);
            let host = u64::from(u32::MAX >> (a.prefix_len & 31));
            let net = 0xffff_ffff ^ host;
            subnet_broadcast |=
                is_v4 & has_broadcast & zero((s & host) ^ host) & zero((s & net) ^ (addr & net));
        }
        let (src_loopback, dst_loopback) = (zero((s >> 24) ^ 127), zero((d >> 24) ^ 127));
        let bad = zero(s >> 24)
            | zero((s >> 28) ^ 0xe)
            | zero(s ^ 0xffff_ffff)
            | subnet_broadcast
            | (src_loopback & (1 - dst_loopback));
        (bad, own, src_loopback)
    };
    if bad_source != 0 {
        Err(PeerRefusal::Source)
    } else if own | loopback_pair != 0 {
        Ok(())
    } else {
        Err(PeerRefusal::Destination)
    }
}

/// [`check_peer`] on a request frame as npk_serve holds it (`frame` as parsed into `p` by
/// npk_common::service::udp_reply::parse_request), and the MAC addresses: a group (multicast or
/// broadcast) source MAC is refused, and so is a group destination MAC, which the in-place
/// reply would carry as its source.
#[inline(always)]
pub fn check_frame(
    frame: &[u8; FRAME_BUF],
    p: &Request,
    local: &[IfAddr],
) -> Result<(), PeerRefusal> {
    // The group bit: the least significant bit of the first byte.
    if frame[6] & 1 != 0 {
        return Err(PeerRefusal::Source);
    }
    if frame[0] & 1 != 0 {
        return Err(PeerRefusal::Destination);
    }
    let l3 = p.l3 & 31;
    let (at, len) = if p.ipv6 { (l3 + 8, 16) } else { (l3 + 12, 4) };
    // 16 bytes each; check_peer reads only the first 4 of an IPv4 address.
    let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
    for i in 0..16 {
        src[i] = frame[(at + i) & (FRAME_BUF - 1)];
        dst[i] = frame[(at + len + i) & (FRAME_BUF - 1)];
    }
    check_peer(p.ipv6, &src, &dst, local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn local() -> [IfAddr; MAX_IF_ADDRS] {
        let mut l = [IfAddr::NONE; MAX_IF_ADDRS];
        l[0] = IfAddr::v4([10, 0, 0, 1], 24);
        l[1] = IfAddr::v4([192, 168, 7, 9], 31);
        l[2] = IfAddr::v6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).octets(), 64);
        l
    }

    fn bytes(ip: IpAddr) -> (bool, [u8; 16]) {
        match ip {
            IpAddr::V4(a) => {
                let mut b = [0; 16];
                b[..4].copy_from_slice(&a.octets());
                (false, b)
            }
            IpAddr::V6(a) => (true, a.octets()),
        }
    }

    fn check(src: &str, dst: &str) -> Result<(), PeerRefusal> {
        let (v6, s) = bytes(src.parse().unwrap());
        let (_, d) = bytes(dst.parse().unwrap());
        check_peer(v6, &s, &d, &local())
    }

    #[test]
    fn unicast_to_an_own_address_is_answered() {
        for (src, dst) in [
            ("10.0.0.2", "10.0.0.1"),
            ("10.0.1.255", "10.0.0.1"), // another subnet's .255 can be a host
            ("203.0.113.5", "192.168.7.9"),
            ("192.168.7.8", "192.168.7.9"), // /31: both addresses are hosts
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1", "127.0.0.2"),
            ("fd00::2", "fd00::1"),
            ("fe80::1", "fd00::1"),
            ("::1", "::1"),
        ] {
            assert_eq!(check(src, dst), Ok(()), "{src} -> {dst}");
        }
    }

    #[test]
    fn sources_that_name_no_single_host_are_refused() {
        for src in [
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "10.0.0.255",
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
        ] {
            assert_eq!(check(src, "10.0.0.1"), Err(PeerRefusal::Source), "{src}");
        }
        for src in ["ff02::1", "ff0e::1", "::", "::1", "::ffff:10.0.0.2"] {
            assert_eq!(check(src, "fd00::1"), Err(PeerRefusal::Source), "{src}");
        }
    }

    #[test]
    fn destinations_other_than_own_addresses_are_refused() {
        for dst in [
            "255.255.255.255",
            "10.0.0.255",
            "224.0.0.1",
            "10.0.0.2",
            "192.168.7.8",
            "127.0.0.1",
        ] {
            assert_eq!(
                check("10.0.0.2", dst),
                Err(PeerRefusal::Destination),
                "{dst}"
            );
        }
        for dst in ["ff02::1", "fd00::2", "::1"] {
            assert_eq!(
                check("fd00::2", dst),
                Err(PeerRefusal::Destination),
                "{dst}"
            );
        }
        // No addresses: nothing is answered.
        let (_, s) = bytes("10.0.0.2".parse().unwrap());
        let (_, d) = bytes("10.0.0.1".parse().unwrap());
        assert_eq!(
            check_peer(false, &s, &d, &[IfAddr::NONE; MAX_IF_ADDRS]),
            Err(PeerRefusal::Destination)
        );
    }

    /// A UDP frame (IPv4, or IPv6, optionally VLAN-tagged) as npk_serve holds it, parsed.
    fn frame(
        src_mac: u8,
        dst_mac: u8,
        src: &str,
        dst: &str,
        vlan: bool,
    ) -> (Request, [u8; FRAME_BUF]) {
        let mut f = std::vec![dst_mac, 0, 0, 0, 0, 1, src_mac, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0, 0, 7]);
        }
        let (v6, s) = bytes(src.parse().unwrap());
        let (_, d) = bytes(dst.parse().unwrap());
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64]);
            f.extend_from_slice(&s);
            f.extend_from_slice(&d);
        } else {
            f.extend_from_slice(&[0x08, 0, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
            f.extend_from_slice(&s[..4]);
            f.extend_from_slice(&d[..4]);
        }
        f.extend_from_slice(&[0x9c, 0x40, 0x1e, 0xc6, 0, 8, 0, 0]);
        let mut b = [0u8; FRAME_BUF];
        b[..f.len()].copy_from_slice(&f);
        let p = crate::service::udp_reply::parse_request(&b, f.len(), f.len(), 7878).unwrap();
        (p, b)
    }

    #[test]
    fn frames_are_checked_by_their_addresses_and_macs() {
        for vlan in [false, true] {
            for (src, dst) in [("10.0.0.2", "10.0.0.1"), ("fd00::2", "fd00::1")] {
                let (p, b) = frame(2, 2, src, dst, vlan);
                assert_eq!(check_frame(&b, &p, &local()), Ok(()), "{src} {vlan}");
                // Source and destination swapped: the destination is not ours.
                let (p, b) = frame(2, 2, dst, src, vlan);
                assert_eq!(check_frame(&b, &p, &local()), Err(PeerRefusal::Destination));
                let (p, b) = frame(0xff, 2, src, dst, vlan);
                assert_eq!(check_frame(&b, &p, &local()), Err(PeerRefusal::Source));
                let (p, b) = frame(2, 0x33, src, dst, vlan);
                assert_eq!(check_frame(&b, &p, &local()), Err(PeerRefusal::Destination));
            }
            let (p, b) = frame(2, 2, "224.0.0.1", "10.0.0.1", vlan);
            assert_eq!(check_frame(&b, &p, &local()), Err(PeerRefusal::Source));
            let (p, b) = frame(2, 2, "ff02::1", "fd00::1", vlan);
            assert_eq!(check_frame(&b, &p, &local()), Err(PeerRefusal::Source));
        }
    }

    /// The rule written with std's address predicates.
    fn reference(src: IpAddr, dst: IpAddr, local: &[(IpAddr, u8)]) -> Result<(), PeerRefusal> {
        let subnet_broadcast = |s: Ipv4Addr| {
            local.iter().any(|(a, p)| match a {
                IpAddr::V4(a) if *p <= 30 => {
                    let host = u32::MAX >> p;
                    u32::from(s) == u32::from(*a) | host
                }
                _ => false,
            })
        };
        let bad_source = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                s.octets()[0] == 0
                    || s.is_multicast()
                    || s.is_broadcast()
                    || (s.is_loopback() && !d.is_loopback())
                    || subnet_broadcast(s)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                s.is_unspecified()
                    || s.is_multicast()
                    || s.to_ipv4_mapped().is_some()
                    || (s.is_loopback() && !d.is_loopback())
            }
            _ => unreachable!(),
        };
        if bad_source {
            Err(PeerRefusal::Source)
        } else if src.is_loopback() || local.iter().any(|(a, _)| *a == dst) {
            Ok(())
        } else {
            Err(PeerRefusal::Destination)
        }
    }

    fn ip(v6: bool) -> impl Strategy<Value = IpAddr> {
        // Mostly addresses near the interesting ones, some anywhere.
        let four = prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(a.into())),
            (0u8..4, any::<u8>()).prop_map(|(k, h)| {
                let net = [[10, 0, 0], [224, 0, 0], [127, 0, 0], [255, 255, 255]][k as usize];
                IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], h))
            }),
        ];
        let six = prop_oneof![
            any::<u128>().prop_map(|a| IpAddr::V6(a.into())),
            (0u8..4, any::<u8>()).prop_map(|(k, h)| {
                let top = [0xfd00, 0xff02, 0, 0xfe80][k as usize];
                IpAddr::V6(Ipv6Addr::new(top, 0, 0, 0, 0, 0, 0, u16::from(h)))
            }),
        ];
        if v6 { six.boxed() } else { four.boxed() }
    }

    proptest! {
        #[test]
        fn the_rule_is_the_reference(
            (src, dst, addrs) in any::<bool>().prop_flat_map(|v6| {
                (ip(v6), ip(v6), proptest::collection::vec((ip(v6), 0u8..=32), 0..MAX_IF_ADDRS))
            }),
        ) {
            let v6 = src.is_ipv6();
            let local: std::vec::Vec<(IpAddr, u8)> = addrs
                .into_iter()
                .map(|(a, p)| (a, if v6 { p * 4 } else { p }))
                .collect();
            let mut table = [IfAddr::NONE; MAX_IF_ADDRS];
            for (t, (a, p)) in table.iter_mut().zip(&local) {
                let (_, b) = bytes(*a);
                *t = if v6 { IfAddr::v6(b, *p) } else { IfAddr::v4([b[0], b[1], b[2], b[3]], *p) };
            }
            let (_, s) = bytes(src);
            let (_, d) = bytes(dst);
            prop_assert_eq!(check_peer(v6, &s, &d, &table), reference(src, dst, &local));
        }
    }
}
