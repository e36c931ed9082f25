//! Packet parsing and the packet feature vector (schema [`crate::model::FeatureSchema::PacketV6`]).
//!
//! The parser reads through the [`Frame`] trait: the kernel implements it over a copy of the
//! frame's first [`MAX_HEADER_OFFSET`] bytes, userspace over a byte slice with the same window,
//! so both sides parse every frame identically.
//!
//! # Features (all i32, in this order)
//! | # | feature | source |
//! |---|---|---|
//! | 0 | IP version (4 or 6) | header |
//! | 1 | IP protocol / IPv6 next header | header |
//! | 2 | IP packet length in bytes (IPv4 total length, IPv6 40 + payload length; 0 for UDP, ICMP, half-open TCP) | header |
//! | 3 | IP header bytes (IPv4 options and IPv6 extension headers included) | header |
//! | 4 | share of the TCP flow's packets that carried ACK, in 1/16 (0..=16; 0 when not TCP) | flow |
//! | 5 | 1 while the TCP flow is half open: SYNs seen, no ACK yet (else 0) | flow |
//! | 6 | TCP flags (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128) | header |
//! | 7 | L4 payload bytes (0 for UDP, ICMP, half-open TCP) | header |
//! | 8 | ICMP/ICMPv6 type + 1 (0 when not ICMP) | header |
//! | 9 | packets of the flow so far, this one included ([`log2_q3`]) | flow |
//! | 10 | mean packet size of the flow (IP bytes; 0 for UDP, ICMP, half-open TCP) | flow |
//! | 11 | microseconds since the flow's previous packet ([`log2_q3`]; of [`IAT_NONE_US`] for the first) | flow |
//! | 12 | SYN packets of the flow ([`log2_q3`]) | flow |
//! | 13 | FIN or RST packets of the flow ([`log2_q3`]) | flow |
//! | 14 | packet rate of the source host ([`log2_q3`] of a decayed count) | host |
//! | 15 | byte rate of the source host (log; 0 for UDP, ICMP, half-open TCP) | host |
//! | 16 | rate of SYNs without ACK from the source host (log) | host |
//! | 17 | rate of new flows from the source host (log) | host |
//! | 18 | ICMP rate of the source host (log) | host |
//! | 19 | distinct destination ports of the source host, last 1-2 s (0..=64) | host |
//! | 20 | distinct destination hosts of the source host, last 1-2 s (0..=64) | host |
//! | 21 | pacing of the source host: mean `log2_q3` of its packet gaps, 1/16 steps | host |
//! | 22 | pacing deviation: mean absolute deviation of the same, 1/16 steps | host |
//! | 23 | rate of new flows to the service (destination address, protocol, port; log) | service |
//! | 24 | rate of SYNs without ACK to the service (log) | service |
//! | 25 | distinct source hosts of the service, last 1-2 s (0..=64) | service |
//! | 26 | reply balance of the flow: `log2_q3` of the packets this machine sent back in it over its packets ([`reply_balance`]) | replies |
//! | 27 | reply balance of the source host: the same of its decayed counts ([`HostState::reply_balance`]) | replies |
//!
//! A flow is the 5-tuple [`FlowKey`] in one direction, a host its source address, a service
//! its [`ServiceKey`]; rates, sketches and pacing are explained in [`crate::host`].
//!
//! # Replies
//! Features 26 and 27 count what this machine sends back ([`observe_reply`], run by the egress
//! program on every outgoing packet): whether a flow was ever answered (an iperf3 stream's
//! connect datagram is, a flood's datagram never) and whether a host hears back as much as it
//! sends (a DNS client gets an answer per query, a flood to a closed port almost nothing).
//! They are the first features of what the receiver does rather than what the sender chose. A
//! model of the 26 ingress features alone ([`crate::model::FeatureSchema::PacketV5`], the
//! first 26 columns) runs where no egress program can attach.
//!
//! # Left out on purpose
//! A feature that a sending tool or a service sets freely describes the recording, not the
//! behaviour: a model trained on one lab family learns it and fails on the next (see
//! scripts/heldout.sh and the README's held-out protocol). So the vector holds no TTL, TCP
//! window or port number (hping3 -t/-w/-p/-s, nmap -g, iperf3 -p, another OS), and no size
//! where the sender picks it at will: UDP datagrams (hping3 -d, iperf3 -l), ICMP messages
//! (ping -s) and TCP flows still half open (a SYN flood's payload, hping3 -d). The flow and the
//! host still count those bytes; counts and gaps are on the [`log2_q3`] scale, which keeps
//! their order of magnitude and not the exact values of a run. What is left is how a flow, a
//! host and a service behave: handshakes completed or not, rates, pacing, flows, ports and
//! hosts touched.

use crate::{
    host::{
        HOST_FEATURES, HostState, NO_REPLIES, PacketEvent, ServiceKey, ServiceState, decay,
        fold_addr, log2_q3,
    },
    model::FeatureSchema,
};
use bytemuck::{Pod, Zeroable};

/// The schema of the features [`observe`] computes (a model header names the one it was
/// trained on).
pub const SCHEMA: FeatureSchema = FeatureSchema::PacketV6;
pub const NUM_FEATURES: usize = 28;
/// Features 0..INGRESS_FEATURES need only the packets that arrive (schema v5, which a model
/// can be trained on alone: `npk train --ingress-only`); the rest count replies.
pub const INGRESS_FEATURES: usize = 26;
/// Features 0..FLOW_FEATURES are the packet's and its flow's.
pub const FLOW_FEATURES: usize = 14;
/// Column names of the features, in order: the header of `npk features`/`npk capture` CSV files,
/// by which `npk train` recognizes packet data.
pub const FEATURE_NAMES: [&str; NUM_FEATURES] = [
    "ip_version",
    "protocol",
    "ip_len",
    "ip_header_len",
    "flow_ack_share",
    "flow_half_open",
    "tcp_flags",
    "payload_len",
    "icmp_type",
    "flow_packets_log2",
    "flow_mean_size",
    "flow_iat_log2",
    "flow_syn_log2",
    "flow_fin_rst_log2",
    "host_pkt_rate",
    "host_byte_rate",
    "host_syn_rate",
    "host_new_flow_rate",
    "host_icmp_rate",
    "host_dst_ports",
    "host_dst_hosts",
    "host_gap_mean",
    "host_gap_dev",
    "svc_new_flow_rate",
    "svc_syn_rate",
    "svc_src_hosts",
    "flow_reply_balance",
    "host_reply_balance",
];
/// Headers are read from the first this many bytes of a frame (Ethernet + VLAN + a 60-byte
/// IPv4 header or IPv6 with extension headers + TCP with options fit easily).
pub const MAX_HEADER_OFFSET: usize = 256;
/// Inter-arrival feature of a flow's first packet, and the cap for long gaps (10 s).
pub const IAT_NONE_US: u32 = 10_000_000;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// EtherTypes (also read by [`crate::service::udp_reply`]).
pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const ETH_P_8021Q: u16 = 0x8100;
pub(crate) const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;

/// Byte access to the first [`MAX_HEADER_OFFSET`] bytes of a frame: the kernel copies them
/// into a buffer once (the verifier follows variable offsets into a buffer far better than into
/// packet memory), so headers ending beyond them read as truncated on both sides.
pub trait Frame {
    /// `N` bytes at `offset`, or `None` when they do not end within the header window.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

/// A frame in memory: the userspace reader, with the kernel's window limit.
impl Frame for [u8] {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let window = self.len().min(MAX_HEADER_OFFSET);
        if offset >= MAX_HEADER_OFFSET || offset + N > window {
            return None;
        }
        self[offset..offset + N].try_into().ok()
    }
}

/// The 5-tuple of a flow. IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`).
///
/// # Layout
/// 40 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Per-flow state: the inputs of the flow features and the verdict cache.
///
/// # Layout
/// 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowState {
    pub first_ns: u64,
    pub last_ns: u64,
    pub bytes: u64,
    pub packets: u32,
    pub syn: u32,
    pub fin_rst: u32,
    pub ack: u32,
    /// The last verdict and the version of the model that gave it.
    pub class: u32,
    pub model_version: u32,
    /// Packets since the last inference.
    pub since_infer: u32,
    /// The last verdict's margin, and 1 when it reached the model's drop margin.
    pub margin: u32,
    pub confident: u32,
    /// Packets this machine sent back in the flow (see [`observe_reply`]).
    pub replies: u32,
}

const _: () = assert!(core::mem::size_of::<FlowState>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data without padding (size asserts above).
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowState {}
}

impl FlowKey {
    /// The key of the flow that this packet answers: addresses and ports swapped.
    #[inline(always)]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
            _pad: [0; 3],
        }
    }

    /// The service this packet targets.
    #[inline(always)]
    pub fn service(&self) -> ServiceKey {
        ServiceKey {
            dst: self.dst,
            dst_port: self.dst_port,
            protocol: self.protocol,
            _pad: 0,
        }
    }
}

/// Why a frame was not classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): always passed, never a fail action.
    NotIp,
    /// The frame ends inside a header.
    Truncated,
    /// A header field is impossible (IPv4 IHL < 5, version mismatch).
    Malformed,
}

/// The header fields the features need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    pub key: FlowKey,
    pub ip_version: u8,
    pub ttl: u8,
    pub tcp_flags: u8,
    /// ICMP type + 1, 0 when not ICMP.
    pub icmp_type: u16,
    pub ip_len: u32,
    pub ip_header_len: u32,
    pub tcp_window: u32,
    pub payload_len: u32,
}

#[inline(always)]
fn be16<F: Frame + ?Sized>(f: &F, off: usize) -> Result<u16, ParseError> {
    f.read::<2>(off)
        .map(u16::from_be_bytes)
        .ok_or(ParseError::Truncated)
}

#[inline(always)]
fn byte<F: Frame + ?Sized>(f: &F, off: usize) -> Result<u8, ParseError> {
    f.read::<1>(off).map(|b| b[0]).ok_or(ParseError::Truncated)
}

/// The frame holds at least `end` bytes (a whole header ending there).
#[inline(always)]
fn need<F: Frame + ?Sized>(f: &F, end: usize) -> Result<(), ParseError> {
    f.read::<1>(end - 1)
        .map(|_| ())
        .ok_or(ParseError::Truncated)
}

/// Parses Ethernet (one 802.1Q/802.1ad tag), IPv4 (with options) or IPv6 (hop-by-hop, routing
/// and destination options headers), then TCP, UDP or ICMP.
#[inline(always)]
pub fn parse<F: Frame + ?Sized>(f: &F) -> Result<Headers, ParseError> {
    let mut off = ETH_HLEN;
    let mut ethertype = be16(f, 12)?;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16(f, 16)?;
        off += 4;
    }
    let mut h = Headers::default();
    let l4_off;
    let l4_end;
    match ethertype {
        ETH_P_IP => {
            let vihl = byte(f, off)?;
            let ihl = (vihl & 0x0f) as usize * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(ParseError::Malformed);
            }
            h.ip_version = 4;
            h.ip_len = be16(f, off + 2)? as u32;
            h.ttl = byte(f, off + 8)?;
            h.key.protocol = byte(f, off + 9)?;
            let src = f.read::<4>(off + 12).ok_or(ParseError::Truncated)?;
            let dst = f.read::<4>(off + 16).ok_or(ParseError::Truncated)?;
            h.key.src[10] = 0xff;
            h.key.src[11] = 0xff;
            h.key.src[12..].copy_from_slice(&src);
            h.key.dst[10] = 0xff;
            h.key.dst[11] = 0xff;
            h.key.dst[12..].copy_from_slice(&dst);
            h.ip_header_len = ihl as u32;
            let fragment_offset = be16(f, off + 6)? & 0x1fff;
            // The options must be in the frame too. Checked after the fixed fields: the
            // verifier cannot derive their bounds from this variable-offset check.
            need(f, off + ihl)?;
            l4_off = off + ihl;
            l4_end = off as u32 + h.ip_len;
            if fragment_offset != 0 {
                // Later fragments carry no L4 header.
                h.payload_len = h.ip_len.saturating_sub(ihl as u32);
                return Ok(h);
            }
        }
        ETH_P_IPV6 => {
            if byte(f, off)? >> 4 != 6 {
                return Err(ParseError::Malformed);
            }
            h.ip_version = 6;
            h.ip_len = 40 + be16(f, off + 4)? as u32;
            h.ttl = byte(f, off + 7)?;
            h.key.src = f.read::<16>(off + 8).ok_or(ParseError::Truncated)?;
            h.key.dst = f.read::<16>(off + 24).ok_or(ParseError::Truncated)?;
            let mut next = byte(f, off + 6)?;
            let mut ext = off + 40;
            // Up to two extension headers; anything deeper is classified by its next-header value.
            for _ in 0..2 {
                if !matches!(next, 0 | 43 | 60) {
                    break;
                }
                let len = (byte(f, ext + 1)? as usize + 1) * 8;
                next = byte(f, ext)?;
                ext += len;
            }
            h.key.protocol = next;
            h.ip_header_len = (ext - off) as u32;
            l4_off = ext;
            l4_end = off as u32 + h.ip_len;
        }
        _ => return Err(ParseError::NotIp),
    }
    let payload = |header_len: usize| l4_end.saturating_sub((l4_off + header_len) as u32);
    match h.key.protocol {
        PROTO_TCP => {
            h.key.src_port = be16(f, l4_off)?;
            h.key.dst_port = be16(f, l4_off + 2)?;
            let data_off = (byte(f, l4_off + 12)? >> 4) as usize * 4;
            if data_off < 20 {
                return Err(ParseError::Malformed);
            }
            need(f, l4_off + data_off)?;
            h.tcp_flags = byte(f, l4_off + 13)?;
            h.tcp_window = be16(f, l4_off + 14)? as u32;
            h.payload_len = payload(data_off);
        }
        PROTO_UDP => {
            h.key.src_port = be16(f, l4_off)?;
            h.key.dst_port = be16(f, l4_off + 2)?;
            need(f, l4_off + 8)?;
            h.payload_len = payload(8);
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            h.icmp_type = byte(f, l4_off)? as u16 + 1;
            need(f, l4_off + 8)?;
            h.payload_len = payload(8);
        }
        _ => h.payload_len = payload(0),
    }
    Ok(h)
}

#[inline(always)]
fn sat_i32(v: u64) -> i32 {
    if v > i32::MAX as u64 {
        i32::MAX
    } else {
        v as i32
    }
}

/// The state a packet updates: its flow's, its source host's and its service's.
pub struct PacketState<'a> {
    pub flow: &'a mut FlowState,
    pub host: &'a mut HostState,
    pub service: &'a mut ServiceState,
}

/// Updates the packet's flow, host and service with this packet seen at `now_ns` and writes
/// the feature vector: the ingress features here, the reply features by [`reply_features`] of
/// the counts returned (the kernel computes those in a function of their own, see
/// npk-ebpf's classify.rs). The one feature function: the kernel, `npk features`/`npk capture`
/// and the tests call it ([`observe_all`] does both steps).
#[inline(always)]
pub fn observe(
    h: &Headers,
    state: PacketState<'_>,
    now_ns: u64,
    out: &mut [i32; NUM_FEATURES],
) -> ReplyCounts {
    let (flow_out, rest) = out.split_at_mut(FLOW_FEATURES);
    let (host_out, rest) = rest.split_at_mut(HOST_FEATURES);
    let service_out = &mut rest[..INGRESS_FEATURES - FLOW_FEATURES - HOST_FEATURES];
    let (Ok(flow_out), Ok(host_out), Ok(service_out)) = (
        <&mut [i32; FLOW_FEATURES]>::try_from(flow_out),
        <&mut [i32; HOST_FEATURES]>::try_from(host_out),
        <&mut [i32; INGRESS_FEATURES - FLOW_FEATURES - HOST_FEATURES]>::try_from(service_out),
    ) else {
        return ReplyCounts::default();
    };
    observe_flow(h, state.flow, now_ns, flow_out);
    const SYN_ACK: u8 = 0x02 | 0x10;
    let event = PacketEvent {
        ip_len: h.ip_len,
        new_flow: state.flow.packets == 1,
        syn: h.key.protocol == PROTO_TCP && h.tcp_flags & SYN_ACK == 0x02,
        icmp: h.icmp_type != 0,
        dst_port: h.key.dst_port,
        dst_host: fold_addr(&h.key.dst),
        src_host: fold_addr(&h.key.src),
    };
    state.host.observe(&event, now_ns, host_out);
    state.service.observe(&event, now_ns, service_out);
    // No sizes for UDP, ICMP and half-open TCP (see the schema notes above): the host and flow
    // still count the bytes. A mask, not a branch (see `nonzero`).
    let udp = 1 - nonzero(u64::from(h.key.protocol ^ PROTO_UDP));
    let icmp = nonzero(u64::from(h.icmp_type));
    let half_open = out[5] as u64 & 1;
    let keep = (1 - (udp | icmp | half_open)) as i32;
    for i in SENDER_SIZE_FEATURES {
        out[i] *= keep;
    }
    ReplyCounts {
        flow_replies: u64::from(state.flow.replies),
        flow_packets: u64::from(state.flow.packets),
        host_replies: state.host.replies,
        host_replies_ns: state.host.replies_ns,
        host_packets: state.host.packets,
    }
}

/// [`observe`] and [`reply_features`]: the whole vector (userspace and tests).
#[inline(always)]
pub fn observe_all(
    h: &Headers,
    state: PacketState<'_>,
    now_ns: u64,
    out: &mut [i32; NUM_FEATURES],
) {
    let counts = observe(h, state, now_ns, out);
    if let Some(replies) = out.last_chunk_mut::<{ NUM_FEATURES - INGRESS_FEATURES }>() {
        *replies = reply_features(&counts, now_ns);
    }
}

/// What the reply features are computed from, as [`observe`] left the flow and the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyCounts {
    pub flow_replies: u64,
    pub flow_packets: u64,
    /// The host's decayed replies as of `host_replies_ns`, and its packets as of now.
    pub host_replies: u64,
    pub host_replies_ns: u64,
    pub host_packets: u64,
}

/// Features 26 and 27 at `now_ns`: the flow's and the host's [`reply_balance`] (the host's
/// replies decayed to now, as its packets are).
#[inline(always)]
pub fn reply_features(c: &ReplyCounts, now_ns: u64) -> [i32; NUM_FEATURES - INGRESS_FEATURES] {
    let host_replies = decay(c.host_replies, now_ns.saturating_sub(c.host_replies_ns));
    [
        reply_balance(c.flow_replies, c.flow_packets),
        reply_balance(host_replies, c.host_packets),
    ]
}

/// The features of the packets this machine sends count nothing but replies: the flow a
/// packet answers (the reversed 5-tuple) gets one, and the host it goes to one at `now_ns`.
/// Nothing is created: only flows and hosts that sent something get replies counted. The
/// kernel's egress program, `npk features` (frames from the local address) and the tests call
/// it.
#[inline(always)]
pub fn observe_reply(flow: Option<&mut FlowState>, host: Option<&mut HostState>, now_ns: u64) {
    if let Some(flow) = flow {
        flow.replies = flow.replies.saturating_add(1);
    }
    if let Some(host) = host {
        host.replied(now_ns);
    }
}

/// `log2_q3(replies) - log2_q3(packets)`: 0 when as many packets come back as go in, -8 per
/// halving of that ratio, [`NO_REPLIES`] (below every ratio) when nothing came back. A ratio,
/// so that a tool sending twice as fast or for twice as long barely moves it, and with no
/// reply far apart from one reply in ten thousand: the step that tells a stream whose setup
/// was answered from a flood that never is.
#[inline(always)]
pub fn reply_balance(replies: u64, packets: u64) -> i32 {
    let balance = log2_q3(replies) - log2_q3(packets);
    // A mask, not a branch (see `nonzero`).
    let none = 1 - nonzero(replies) as i32;
    balance + none * (NO_REPLIES - balance)
}

/// 1 when `x` is not 0, else 0, as arithmetic whose result LLVM cannot see through (LLVM still
/// reads `(x | -x) >> 63` as `x != 0`, a short compare and branch in BPF, but the branches of
/// the masks' `if`s are gone). Every branch before the inference is a path the verifier
/// walks the bounded inference loops on again: the branchy form of the schema's masks took
/// 5.10's `npk_bounded_128` past its million instructions. Not the form of
/// npk_common::service::peer's `zero` (the opaque value between the `or` and the shift, which
/// leaves no branch at all): here that form took 6.1's and 5.10's classifiers past the limit
/// (measured in qemu, `scripts/vm/run.sh bookworm bullseye`), though 6.18 counted fewer.
#[inline(always)]
pub(crate) fn nonzero(x: u64) -> u64 {
    core::hint::black_box((x | x.wrapping_neg()) >> 63)
}

/// Feature indices of the sizes UDP datagrams, ICMP messages and half-open TCP flows leave out
/// (IP length, payload, the flow's mean size, the host's byte rate).
const SENDER_SIZE_FEATURES: [usize; 4] = [2, 7, 10, FLOW_FEATURES + 1];

/// The packet and flow features.
#[inline(always)]
fn observe_flow(h: &Headers, flow: &mut FlowState, now_ns: u64, out: &mut [i32; FLOW_FEATURES]) {
    let iat_us = if flow.packets == 0 {
        flow.first_ns = now_ns;
        IAT_NONE_US as u64
    } else {
        let gap_us = now_ns.saturating_sub(flow.last_ns) / 1000;
        if gap_us > IAT_NONE_US as u64 {
            IAT_NONE_US as u64
        } else {
            gap_us
        }
    };
    flow.last_ns = now_ns;
    flow.packets = flow.packets.saturating_add(1);
    flow.bytes = flow.bytes.saturating_add(h.ip_len as u64);
    const SYN: u8 = 0x02;
    const FIN_RST: u8 = 0x01 | 0x04;
    const ACK: u8 = 0x10;
    let tcp = 1 - nonzero(u64::from(h.key.protocol ^ PROTO_TCP));
    let counts = |flag: u8| (tcp & nonzero(u64::from(h.tcp_flags & flag))) as u32;
    flow.syn += counts(SYN);
    flow.fin_rst += counts(FIN_RST);
    flow.ack += counts(ACK);
    // flow.packets >= 1 here, and ack <= packets: 0..=16.
    let ack_share = tcp * (16 * u64::from(flow.ack) / u64::from(flow.packets));
    // SYNs and no ACK yet: a handshake that has not completed (or never will: a SYN flood, a
    // SYN scan).
    let half_open = tcp & nonzero(u64::from(flow.syn)) & (1 - nonzero(u64::from(flow.ack)));
    *out = [
        h.ip_version as i32,
        h.key.protocol as i32,
        sat_i32(h.ip_len as u64),
        sat_i32(h.ip_header_len as u64),
        ack_share as i32,
        half_open as i32,
        h.tcp_flags as i32,
        sat_i32(h.payload_len as u64),
        h.icmp_type as i32,
        log2_q3(flow.packets as u64),
        sat_i32(flow.bytes / flow.packets as u64),
        log2_q3(iat_us),
        log2_q3(flow.syn as u64),
        log2_q3(flow.fin_rst as u64),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut v = std::vec![0u8; 12];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v
    }

    fn ipv4_tcp(options: usize, payload: usize) -> Vec<u8> {
        let mut f = eth(ETH_P_IP);
        let ihl = 20 + options;
        let total = (ihl + 20 + payload) as u16;
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend(std::iter::repeat_n(1u8, options));
        f.extend_from_slice(&1234u16.to_be_bytes());
        f.extend_from_slice(&80u16.to_be_bytes());
        f.extend_from_slice(&[0; 8]);
        f.push(5 << 4);
        f.push(0x12);
        f.extend_from_slice(&512u16.to_be_bytes());
        f.extend_from_slice(&[0; 4]);
        f.extend(std::iter::repeat_n(0xaa, payload));
        f
    }

    #[test]
    fn parses_ipv4_tcp_with_options() {
        let h = parse(&ipv4_tcp(8, 10)[..]).unwrap();
        assert_eq!(h.ip_version, 4);
        assert_eq!(h.ip_header_len, 28);
        assert_eq!(
            (h.key.src_port, h.key.dst_port, h.key.protocol),
            (1234, 80, PROTO_TCP)
        );
        assert_eq!(h.tcp_flags, 0x12);
        assert_eq!(h.tcp_window, 512);
        assert_eq!(h.payload_len, 10);
        assert_eq!(h.key.src[12..], [10, 0, 0, 1]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let full = ipv4_tcp(4, 0);
        for n in 0..full.len() {
            let r = parse(&full[..n]);
            assert!(r.is_err(), "prefix {n} parsed");
        }
        assert!(parse(&full[..]).is_ok());
    }

    #[test]
    fn vlan_and_non_ip() {
        let mut f = eth(ETH_P_8021Q);
        f.extend_from_slice(&[0, 5]);
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        f.extend_from_slice(&ipv4_tcp(0, 0)[14..]);
        assert_eq!(parse(&f[..]).unwrap().key.dst_port, 80);
        assert_eq!(parse(&eth(0x0806)[..]), Err(ParseError::NotIp));
        let mut bad = ipv4_tcp(0, 0);
        bad[14] = 0x44; // IHL 4
        assert_eq!(parse(&bad[..]), Err(ParseError::Malformed));
    }

    /// Flow, host and service state for tests.
    #[derive(Default)]
    struct Tables {
        flows: std::collections::HashMap<FlowKey, FlowState>,
        hosts: std::collections::HashMap<[u8; 16], HostState>,
        services: std::collections::HashMap<ServiceKey, ServiceState>,
    }

    impl Tables {
        fn observe(&mut self, h: &Headers, now_ns: u64) -> [i32; NUM_FEATURES] {
            let mut out = [0; NUM_FEATURES];
            let state = PacketState {
                flow: self.flows.entry(h.key).or_default(),
                host: self.hosts.entry(h.key.src).or_default(),
                service: self.services.entry(h.key.service()).or_default(),
            };
            observe_all(h, state, now_ns, &mut out);
            out
        }
    }

    fn column(name: &str) -> usize {
        FEATURE_NAMES.iter().position(|&n| n == name).unwrap()
    }

    impl Tables {
        fn reply(&mut self, reply: &Headers, now_ns: u64) {
            observe_reply(
                self.flows.get_mut(&reply.key.reversed()),
                self.hosts.get_mut(&reply.key.dst),
                now_ns,
            );
        }
    }

    /// `packets` UDP datagrams `gap_ns` apart from one client, each answered when `answered`;
    /// the features of the last.
    fn udp_exchange(packets: u64, gap_ns: u64, answered: bool) -> [i32; NUM_FEATURES] {
        let mut t = Tables::default();
        let mut request = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        request.key.protocol = PROTO_UDP;
        let mut reply = request;
        reply.key = request.key.reversed();
        let mut last = [0; NUM_FEATURES];
        for i in 0..packets {
            last = t.observe(&request, 1 + i * gap_ns);
            if answered {
                t.reply(&reply, 1 + i * gap_ns + 50_000);
            }
        }
        last
    }

    #[test]
    fn replies_count_for_the_flow_they_answer_and_the_host_they_go_to() {
        let (flow, balance) = (column("flow_reply_balance"), column("host_reply_balance"));
        // Long enough (3 s) for the decayed counters to settle.
        let silent = udp_exchange(3000, 1_000_000, false);
        assert_eq!((silent[flow], silent[balance]), (NO_REPLIES, NO_REPLIES));
        let answered = udp_exchange(3000, 1_000_000, true);
        // 2,999 replies by the 3,000th packet; the host hears back as much as it sends.
        assert_eq!(answered[flow], log2_q3(2999) - log2_q3(3000));
        assert!(answered[balance].abs() <= 1, "{}", answered[balance]);
        // Twice the rate: the same balance (a ratio), where the rate features move by 8.
        let faster = udp_exchange(3000, 500_000, true);
        assert!((faster[balance] - answered[balance]).abs() <= 1);
        assert!(faster[column("host_pkt_rate")] > answered[column("host_pkt_rate")] + 4);
        // A reply to a flow or host never seen creates nothing.
        let mut t = Tables::default();
        let stray = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        t.reply(&stray, 1);
        assert!(t.flows.is_empty() && t.hosts.is_empty());
    }

    /// hping3-like: a SYN every 100 us, each from a new source port.
    #[test]
    fn a_flood_with_changing_source_ports_raises_the_host_and_service_new_flow_rates() {
        let mut h = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        h.tcp_flags = 0x02;
        let mut t = Tables::default();
        let mut rates = std::vec::Vec::new();
        for i in 0..2000u32 {
            h.key.src_port = 1024 + i as u16;
            let f = t.observe(&h, 1_000_000_000 + u64::from(i) * 100_000);
            assert_eq!(
                f[column("flow_packets_log2")],
                log2_q3(1),
                "every packet opens a flow"
            );
            rates.push((f[column("host_new_flow_rate")], f[column("svc_syn_rate")]));
        }
        // 10,000 new flows/s for 0.2 s: about 1,560 decayed events, log2_q3 ~ 8 * 18.6.
        let (host, service) = rates[1999];
        assert!(host > 145 && service > 145, "{host} {service}");
        assert!(
            rates[0].0 == 65 && rates[0].1 == 65,
            "one event: {:?}",
            rates[0]
        );
        // A second connection of a benign client, 1 s later: rates of 2 events.
        let mut benign = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        benign.key.src[15] = 9;
        benign.key.dst_port = 443;
        let f1 = t.observe(&benign, 5_000_000_000);
        let f2 = t.observe(&benign, 6_000_000_000);
        assert_eq!(f1[column("host_new_flow_rate")], 65);
        assert!(
            f2[column("host_new_flow_rate")] < 65,
            "no new flow, decayed"
        );
        assert!(f2[column("host_pkt_rate")] < 80);
    }

    /// nmap -sS-like: one SYN per port from one source port.
    #[test]
    fn a_scan_raises_the_distinct_port_count() {
        let mut h = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        h.tcp_flags = 0x02;
        let mut t = Tables::default();
        let ports = column("host_dst_ports");
        let mut last = 0;
        for port in 1..=200u16 {
            h.key.dst_port = port;
            let f = t.observe(&h, 1_000_000_000 + u64::from(port) * 1_000_000);
            assert!(f[ports] >= last, "the count only grows within the window");
            last = f[ports];
        }
        assert!(last >= 55, "200 ports set most of 64 bits: {last}");
        // One client talking to one port stays at 1.
        let mut client = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        client.key.src[15] = 7;
        for i in 0..200u64 {
            let f = t.observe(&client, 1_000_000_000 + i * 1_000_000);
            assert_eq!((f[ports], f[column("host_dst_hosts")]), (1, 1));
        }
    }

    /// Spoofed sources: every packet from a new address, all to one service.
    #[test]
    fn spoofed_sources_raise_the_services_source_count() {
        let mut h = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        let mut t = Tables::default();
        let mut f = [0; NUM_FEATURES];
        for i in 0..500u32 {
            h.key.src[12..].copy_from_slice(&i.to_be_bytes());
            f = t.observe(&h, 1_000_000_000 + u64::from(i) * 10_000);
            assert_eq!(f[column("host_pkt_rate")], 65, "each host sends once");
        }
        assert!(f[column("svc_src_hosts")] >= 60);
    }

    /// UDP datagrams and ICMP messages of different sizes and ports: no size reaches the
    /// features, and no port does for any protocol; a TCP segment keeps its sizes.
    #[test]
    fn udp_and_icmp_carry_no_sizes_and_nothing_carries_ports() {
        let mut t = Tables::default();
        let mut h = parse(&ipv4_tcp(0, 100)[..]).unwrap();
        let tcp = t.observe(&h, 1_000_000);
        assert_eq!(tcp[column("ip_len")], 140);
        assert_eq!(tcp[column("payload_len")], 100);
        for (i, (protocol, icmp_type, src_port, dst_port, size)) in [
            (PROTO_UDP, 0, 1234, 40000, 1000),
            (PROTO_UDP, 0, 50000, 53, 60),
            (PROTO_ICMP, 9, 0, 0, 1400),
        ]
        .into_iter()
        .enumerate()
        {
            (h.key.protocol, h.icmp_type, h.tcp_flags) = (protocol, icmp_type, 0);
            (h.key.src_port, h.key.dst_port, h.ip_len, h.payload_len) =
                (src_port, dst_port, size + 28, size);
            let f = t.observe(&h, 2_000_000 + i as u64 * 1_000);
            for name in ["ip_len", "payload_len", "flow_mean_size", "host_byte_rate"] {
                assert_eq!(f[column(name)], 0, "{name}");
            }
            assert_eq!(
                (f[column("flow_ack_share")], f[column("flow_half_open")]),
                (0, 0)
            );
            assert!(f[column("host_pkt_rate")] > 0);
        }
    }

    /// A handshake that completes leaves the half-open state and raises the ACK share; SYNs
    /// that never get an ACK stay half open with share 0 and carry no size (a SYN flood's
    /// payload is the tool's setting). Ports change nothing.
    #[test]
    fn tcp_flows_carry_their_ack_share_and_half_open_state() {
        let sizes = |f: &[i32; NUM_FEATURES]| {
            ["ip_len", "payload_len", "flow_mean_size", "host_byte_rate"].map(|n| f[column(n)])
        };
        let mut t = Tables::default();
        let mut h = parse(&ipv4_tcp(0, 256)[..]).unwrap();
        h.tcp_flags = 0x02;
        let syn = t.observe(&h, 1_000_000);
        assert_eq!(
            (syn[column("flow_ack_share")], syn[column("flow_half_open")]),
            (0, 1)
        );
        assert_eq!(sizes(&syn), [0; 4]);
        h.tcp_flags = 0x10;
        let ack = t.observe(&h, 1_100_000);
        assert_eq!(
            (ack[column("flow_ack_share")], ack[column("flow_half_open")]),
            (8, 0)
        );
        assert_eq!(sizes(&ack)[..3], [296, 256, 296]);
        assert!(sizes(&ack)[3] > 0);
        for _ in 0..2 {
            t.observe(&h, 1_200_000);
        }
        let f = t.observe(&h, 1_300_000);
        assert_eq!(f[column("flow_ack_share")], 16 * 4 / 5);
        let mut other = h;
        (other.key.src_port, other.key.dst_port) = (40000, 5201);
        other.tcp_flags = 0x02;
        let g = t.observe(&other, 1_400_000);
        assert_eq!(
            (g[column("flow_ack_share")], g[column("flow_half_open")]),
            (0, 1)
        );
    }

    #[test]
    fn flow_features_accumulate() {
        let h = parse(&ipv4_tcp(0, 0)[..]).unwrap();
        let mut flow = FlowState::default();
        let mut out = [0; FLOW_FEATURES];
        observe_flow(&h, &mut flow, 1_000_000, &mut out);
        assert_eq!(out[9], log2_q3(1));
        assert_eq!(out[11], log2_q3(IAT_NONE_US as u64));
        assert_eq!(out[12], log2_q3(1));
        observe_flow(&h, &mut flow, 1_500_000, &mut out);
        assert_eq!(out[9], log2_q3(2));
        assert_eq!(out[10], 40);
        assert_eq!(out[11], log2_q3(500));
        assert_eq!(out[12], log2_q3(2));
    }
}
