//! Fuzzing the capture reader ([`npk::packets::pcap::for_each_frame_in`], what `npk features
//! --pcap` reads): mutations of valid pcap and pcapng files (both byte orders, Ethernet and
//! Linux cooked links, several interfaces, options, statistics blocks) and random bytes behind
//! each magic. It must return frames or an error naming a record; never panic.

mod fuzz_common;

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use fuzz_common::{DEFAULT_CASES, Input, config, mutations};
use npk::packets::pcap::for_each_frame_in;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::packet::PacketBlock;
use pcap_file::pcapng::{PcapNgBlock, PcapNgWriter};
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
};
use proptest::prelude::*;

/// Frames of 14 to 80 bytes with an IPv4 EtherType.
fn frames() -> Vec<Vec<u8>> {
    (0..4u8)
        .map(|i| {
            let mut f = vec![i; 14 + 22 * i as usize];
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            f
        })
        .collect()
}

fn pcap(link: DataLink, resolution: TsResolution, endianness: Endianness) -> Vec<u8> {
    let header = PcapHeader {
        datalink: link,
        ts_resolution: resolution,
        endianness,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (i, f) in frames().iter().enumerate() {
        let at = Duration::from_nanos(1_700_000_000_000_000_000 + i as u64 * 1_234_567);
        w.write_packet(&PcapPacket::new(at, f.len() as u32 + 4, f))
            .unwrap();
    }
    w.into_writer()
}

/// Two interfaces (Ethernet in ns, SLL2 in 2^-6 s with an offset), packets of each kind and a
/// statistics block.
fn pcapng(endianness: Endianness) -> Vec<u8> {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
    let interfaces = [
        (
            DataLink::ETHERNET,
            vec![InterfaceDescriptionOption::IfTsResol(9)],
        ),
        (
            DataLink::LINUX_SLL2,
            vec![
                InterfaceDescriptionOption::IfTsResol(0x86),
                InterfaceDescriptionOption::IfTsOffset(10),
                InterfaceDescriptionOption::IfName(Cow::Borrowed("any")),
            ],
        ),
    ];
    for (linktype, options) in interfaces {
        let idb = InterfaceDescriptionBlock {
            linktype,
            snaplen: 0xffff,
            options,
        };
        w.write_block(&idb.into_block()).unwrap();
    }
    for (i, f) in frames().iter().enumerate() {
        let epb = EnhancedPacketBlock {
            interface_id: (i % 2) as u32,
            timestamp: Duration::from_nanos(1_000_000 + i as u64),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![EnhancedPacketOption::Comment(Cow::Borrowed("c"))],
        };
        w.write_block(&epb.into_block()).unwrap();
    }
    let f = &frames()[1];
    let pb = PacketBlock {
        interface_id: 1,
        drop_count: 0,
        timestamp: 42,
        captured_len: f.len() as u32,
        original_len: f.len() as u32,
        data: Cow::Borrowed(f),
        options: vec![],
    };
    w.write_block(&pb.into_block()).unwrap();
    let isb = InterfaceStatisticsBlock {
        interface_id: 0,
        timestamp: 7,
        options: vec![InterfaceStatisticsOption::IsbStartTime(1)],
    };
    w.write_block(&isb.into_block()).unwrap();
    w.into_inner()
}

static INPUTS: LazyLock<Vec<Input>> = LazyLock::new(|| {
    let files = [
        pcap(
            DataLink::ETHERNET,
            TsResolution::MicroSecond,
            Endianness::Little,
        ),
        pcap(
            DataLink::LINUX_SLL,
            TsResolution::NanoSecond,
            Endianness::Big,
        ),
        pcapng(Endianness::Little),
        pcapng(Endianness::Big),
    ];
    files
        .into_iter()
        .map(|bytes| {
            // Block and record lengths are small; pcapng's section length is a u64 at 16.
            let pcapng = bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]);
            let extra: &[(usize, usize)] = if pcapng { &[(16, 8)] } else { &[] };
            Input::binary(bytes, 1 << 16, extra)
        })
        .collect()
});

/// Magics, block types and options that change how the rest is read.
const TOKENS: &[&[u8]] = &[
    &[0x0a, 0x0d, 0x0d, 0x0a],
    &[0x1a, 0x2b, 0x3c, 0x4d],
    &[0x4d, 0x3c, 0x2b, 0x1a],
    &[0xa1, 0xb2, 0xc3, 0xd4],
    &[0x4d, 0x3c, 0xb2, 0xa1],
    &[1, 0, 0, 0],
    &[3, 0, 0, 0],
    &[6, 0, 0, 0],
    &[9, 0, 1, 0, 0xff, 0, 0, 0],
    &[10, 0, 8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xff; 4],
];

/// Reads `bytes`, touching every frame; whatever the result, no panic.
fn read(bytes: &[u8]) -> u64 {
    let mut sum = 0u64;
    let result = for_each_frame_in(bytes, Path::new("fuzz.pcap"), |f| {
        sum = sum.wrapping_add(f.frame.iter().map(|&b| u64::from(b)).sum::<u64>());
        sum = sum.wrapping_add(f.timestamp_ns);
    });
    match result {
        Ok(s) => s.frames.wrapping_add(sum),
        Err(e) => e.to_string().len() as u64,
    }
}

proptest! {
    #![proptest_config(config(DEFAULT_CASES))]

    #[test]
    fn mutated_captures_never_panic(which in 0usize..4, edits in mutations(TOKENS)) {
        read(&INPUTS[which].mutate(&edits));
    }

    /// Random bytes after each of the magics the reader dispatches on (pcapng: with a byte
    /// order mark after a random block length, so the section header parser runs).
    #[test]
    fn random_bytes_behind_each_magic_never_panic(
        magic in 0usize..MAGICS.len(),
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = MAGICS[magic].to_vec();
        bytes.extend_from_slice(&tail);
        read(&bytes);
    }
}

const MAGICS: &[&[u8]] = &[
    &[0xa1, 0xb2, 0xc3, 0xd4],
    &[0xd4, 0xc3, 0xb2, 0xa1],
    &[0xa1, 0xb2, 0x3c, 0x4d],
    &[0x4d, 0x3c, 0xb2, 0xa1],
    &[0x0a, 0x0d, 0x0d, 0x0a],
    &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a],
    &[0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d],
];

#[test]
fn the_valid_inputs_read() {
    for (input, frames) in INPUTS.iter().zip([4, 4, 5, 5]) {
        let mut n = 0;
        for_each_frame_in(&input.bytes, Path::new("t"), |_| n += 1).unwrap();
        assert_eq!(n, frames);
    }
}
