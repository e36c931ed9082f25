//! Packet captures (pcap and pcapng) read as the Ethernet frames the kernel classifier sees,
//! each with its capture timestamp in nanoseconds.
//!
//! Link types: Ethernet as is; Linux cooked captures (SLL, SLL2: what `tcpdump -i any` writes)
//! get a synthetic Ethernet header carrying their protocol field, so [`npk_common::packet::parse`]
//! reads every capture the same way.
//!
//! The file is read as a stream, one record at a time (a FIFO works: `tcpdump -w - | ...`), so
//! memory holds one record, and records are capped: a pcap frame at [`MAX_FRAME_LEN`], a
//! pcapng block at [`MAX_BLOCK_LEN`], checked from the record's length field before it is read.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use pcap_file::{
    DataLink, Endianness, PcapError,
    pcap::PcapParser,
    pcapng::{
        Block, PcapNgParser,
        blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
    },
};

/// Longest frame a pcap record may carry: libpcap's largest snapshot length
/// (MAXIMUM_SNAPLEN), four times the largest IP packet.
pub const MAX_FRAME_LEN: u32 = 262_144;
/// Largest pcapng block: libpcap's limit for a block (a frame of [`MAX_FRAME_LEN`] with all
/// its options fits many times over).
pub const MAX_BLOCK_LEN: u32 = 16 << 20;

/// Why a capture cannot be read. Record errors name the 1-based record (pcap: packet record;
/// pcapng: block) and its byte offset in the file.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: not a pcap or pcapng file (it starts with {magic:02x?}; pcap starts with a1b2c3d4 or \
         a1b23c4d in either byte order, pcapng with 0a0d0d0a)",
        path.display()
    )]
    NotACapture { path: PathBuf, magic: Vec<u8> },
    #[error("{}: file header: {reason}", path.display())]
    Header { path: PathBuf, reason: String },
    #[error("{}: record {record} at byte offset {offset}: {reason}", path.display())]
    Record {
        path: PathBuf,
        record: u64,
        offset: u64,
        reason: String,
    },
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct CapturedFrame<'a> {
    /// 1-based record number (pcapng: block number) in the file.
    pub record: u64,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// Capture time, nanoseconds since the epoch (pcapng: in the interface's resolution and
    /// offset).
    pub timestamp_ns: u64,
    /// The frame with an Ethernet header (see the module doc).
    pub frame: &'a [u8],
}

/// What a capture held besides frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    pub frames: u64,
    /// pcapng blocks that carry no packet (section, interface, statistics, name blocks).
    pub other_blocks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Ethernet,
    LinuxSll,
    LinuxSll2,
}

impl Link {
    fn of(dl: DataLink) -> Result<Self, String> {
        match dl {
            DataLink::ETHERNET => Ok(Self::Ethernet),
            DataLink::LINUX_SLL => Ok(Self::LinuxSll),
            DataLink::LINUX_SLL2 => Ok(Self::LinuxSll2),
            other => Err(format!(
                "link type {} ({other:?}) is not supported: Ethernet (1), Linux cooked SLL (113) \
                 and SLL2 (276) are",
                u32::from(other)
            )),
        }
    }

    /// The frame as Ethernet; `buf` holds rewritten frames. A record too short for its link
    /// header becomes a frame too short for Ethernet, which the parser counts as truncated,
    /// like a runt Ethernet frame.
    fn ethernet<'a>(self, data: &'a [u8], buf: &'a mut Vec<u8>) -> &'a [u8] {
        // (protocol field, payload start) in the cooked header.
        let (proto, payload) = match self {
            Self::Ethernet => return data,
            Self::LinuxSll => (14, 16),
            Self::LinuxSll2 => (0, 20),
        };
        buf.clear();
        buf.extend_from_slice(&[0; 12]);
        buf.extend_from_slice(data.get(proto..proto + 2).unwrap_or(&[]));
        if data.len() >= payload {
            buf.extend_from_slice(&data[payload..]);
        }
        buf
    }
}

/// Reads `path` (`-`: standard input) and calls `on_frame` for every frame in file order. A
/// gzip-compressed capture (`tcpdump ... | gzip`, `*.pcap.gz`) is read through the
/// decompressor; record offsets in errors are then offsets in the decompressed capture.
pub fn for_each_frame(
    path: &Path,
    on_frame: impl FnMut(&CapturedFrame),
) -> Result<CaptureSummary, CaptureError> {
    for_each_frame_reporting(path, |_| {}, on_frame)
}

/// [`for_each_frame`], calling `on_progress` with how many bytes of the file (as stored:
/// compressed for a gzip'd capture) were read so far.
pub fn for_each_frame_reporting(
    path: &Path,
    on_progress: impl FnMut(u64),
    on_frame: impl FnMut(&CapturedFrame),
) -> Result<CaptureSummary, CaptureError> {
    let stdin = crate::input::is_stdin(path);
    let path = if stdin {
        Path::new(crate::input::STDIN_NAME)
    } else {
        path
    };
    let read_error = |source| CaptureError::Read {
        path: path.to_owned(),
        source,
    };
    let file: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path).map_err(read_error)?)
    };
    let mut file = std::io::BufReader::new(Counting {
        inner: file,
        read: 0,
        on_progress,
    });
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(read_error)?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        let decompressed = flate2::bufread::MultiGzDecoder::new(file);
        return read_capture(Input::new(decompressed), path, on_frame);
    }
    read_capture(Input::new(file), path, on_frame)
}

/// A reader that reports how many bytes went through it.
struct Counting<R, F> {
    inner: R,
    read: u64,
    on_progress: F,
}

impl<R: Read, F: FnMut(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.on_progress)(self.read);
        Ok(n)
    }
}

/// [`for_each_frame`] on a capture in memory; `path` only names it in errors.
pub fn for_each_frame_in(
    bytes: &[u8],
    path: &Path,
    on_frame: impl FnMut(&CapturedFrame),
) -> Result<CaptureSummary, CaptureError> {
    read_capture(Input::new(bytes), path, on_frame)
}

fn read_capture(
    mut input: Input<impl Read>,
    path: &Path,
    on_frame: impl FnMut(&CapturedFrame),
) -> Result<CaptureSummary, CaptureError> {
    let start = input.fill(4).map_err(|source| CaptureError::Read {
        path: path.to_owned(),
        source,
    })?;
    match start.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(input, path, on_frame),
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1],
        ) => read_pcap(input, path, on_frame),
        _ => Err(CaptureError::NotACapture {
            path: path.to_owned(),
            magic: start[..start.len().min(4)].to_vec(),
        }),
    }
}

/// The capture, buffered: the front of `buf[start..end]` is at byte `offset` of the file.
struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    offset: u64,
}

impl<R: Read> Input<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    /// The buffered bytes, read until there are `n` of them or the file ends.
    fn fill(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.end - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            }
            while self.end < n {
                match self.reader.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self.buffered())
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }
}

fn u32_at(bytes: &[u8], at: usize, endianness: Endianness) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    })
}

fn crate_reason(e: &PcapError, left: usize) -> String {
    match e {
        PcapError::IncompleteBuffer => {
            format!("the file ends inside this record ({left} bytes left)")
        }
        other => other.to_string(),
    }
}

fn read_pcap(
    mut input: Input<impl Read>,
    path: &Path,
    mut on_frame: impl FnMut(&CapturedFrame),
) -> Result<CaptureSummary, CaptureError> {
    let read_error = |source| CaptureError::Read {
        path: path.to_owned(),
        source,
    };
    let header_error = |reason: String| CaptureError::Header {
        path: path.to_owned(),
        reason,
    };
    let bytes = input.fill(24).map_err(read_error)?;
    let (rest, parser) =
        PcapParser::new(bytes).map_err(|e| header_error(crate_reason(&e, bytes.len())))?;
    let used = bytes.len() - rest.len();
    input.consume(used);
    let header = parser.header();
    let link = Link::of(header.datalink).map_err(header_error)?;
    let frac_ns = match header.ts_resolution {
        pcap_file::TsResolution::MicroSecond => 1_000,
        pcap_file::TsResolution::NanoSecond => 1,
    };
    let mut summary = CaptureSummary::default();
    let mut buf = Vec::new();
    loop {
        let record = summary.frames + 1;
        let offset = input.offset;
        let record_error = |reason: String| CaptureError::Record {
            path: path.to_owned(),
            record,
            offset,
            reason,
        };
        // Record header: seconds, fraction, captured length, original length.
        let head = input.fill(16).map_err(read_error)?;
        if head.is_empty() {
            break;
        }
        if let Some(captured) = u32_at(head, 8, header.endianness) {
            if captured > MAX_FRAME_LEN {
                return Err(record_error(format!(
                    "captured length {captured} is over npk's limit of {MAX_FRAME_LEN} bytes \
                     (the largest snapshot length)"
                )));
            }
            input.fill(16 + captured as usize).map_err(read_error)?;
        }
        let bytes = input.buffered();
        let (next, raw) = parser
            .next_raw_packet(bytes)
            .map_err(|e| record_error(crate_reason(&e, bytes.len())))?;
        if u64::from(raw.ts_frac) * frac_ns >= 1_000_000_000 {
            return Err(record_error(format!(
                "timestamp fraction {} is a second or more",
                raw.ts_frac
            )));
        }
        if raw.incl_len > raw.orig_len {
            return Err(record_error(format!(
                "captured length {} exceeds the original length {}",
                raw.incl_len, raw.orig_len
            )));
        }
        let timestamp_ns = u64::from(raw.ts_sec) * 1_000_000_000 + u64::from(raw.ts_frac) * frac_ns;
        on_frame(&CapturedFrame {
            record,
            offset,
            timestamp_ns,
            frame: link.ethernet(&raw.data, &mut buf),
        });
        summary.frames += 1;
        let used = bytes.len() - next.len();
        input.consume(used);
    }
    Ok(summary)
}

/// Link type and timestamp scale of a pcapng interface.
struct Interface {
    link: Link,
    /// Timestamp units per second (if_tsresol; default microseconds).
    units_per_second: u128,
    /// Seconds added to every timestamp (if_tsoffset).
    offset_seconds: u64,
}

impl Interface {
    fn of(idb: &InterfaceDescriptionBlock) -> Result<Self, String> {
        let mut units_per_second = 1_000_000u128;
        let mut offset_seconds = 0;
        for option in &idb.options {
            match *option {
                InterfaceDescriptionOption::IfTsResol(r) => {
                    let (base, exp) = if r & 0x80 != 0 {
                        (2u128, u32::from(r & 0x7f))
                    } else {
                        (10, u32::from(r))
                    };
                    units_per_second =
                        base.checked_pow(exp)
                            .filter(|&u| u <= 1 << 64)
                            .ok_or_else(|| {
                                format!("timestamp resolution option {r:#04x} is too fine")
                            })?;
                }
                InterfaceDescriptionOption::IfTsOffset(s) => offset_seconds = s,
                _ => {}
            }
        }
        Ok(Self {
            link: Link::of(idb.linktype)?,
            units_per_second,
            offset_seconds,
        })
    }

    fn nanoseconds(&self, units: u64) -> Result<u64, String> {
        let ns = u128::from(units) * 1_000_000_000 / self.units_per_second
            + u128::from(self.offset_seconds) * 1_000_000_000;
        u64::try_from(ns).map_err(|_| format!("timestamp {units} is beyond the year 2554"))
    }
}

/// Buffers the whole pcapng block at the front of `input`, refusing one over
/// [`MAX_BLOCK_LEN`]; `section` is the byte order of the current section (`None` before the
/// first). A block too short to say its length is left to the parser to report.
fn fill_block(
    input: &mut Input<impl Read>,
    section: Option<Endianness>,
) -> Result<Result<(), String>, std::io::Error> {
    const SECTION_HEADER: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    // Block type, total length, and (section headers) the byte-order magic.
    let head = input.fill(12)?;
    let endianness = if head.get(..4) == Some(&SECTION_HEADER[..]) {
        match head.get(8..12) {
            Some([0x1a, 0x2b, 0x3c, 0x4d]) => Endianness::Big,
            _ => Endianness::Little,
        }
    } else {
        section.unwrap_or(Endianness::Little)
    };
    let Some(len) = u32_at(head, 4, endianness) else {
        return Ok(Ok(()));
    };
    if len > MAX_BLOCK_LEN {
        return Ok(Err(format!(
            "block length {len} is over npk's limit of {MAX_BLOCK_LEN} bytes"
        )));
    }
    input.fill(len as usize)?;
    Ok(Ok(()))
}

fn read_pcapng(
    mut input: Input<impl Read>,
    path: &Path,
    mut on_frame: impl FnMut(&CapturedFrame),
) -> Result<CaptureSummary, CaptureError> {
    let read_error = |source| CaptureError::Read {
        path: path.to_owned(),
        source,
    };
    let first_error = |reason: String| CaptureError::Record {
        path: path.to_owned(),
        record: 1,
        offset: 0,
        reason,
    };
    fill_block(&mut input, None)
        .map_err(read_error)?
        .map_err(first_error)?;
    let bytes = input.buffered();
    let (rest, mut parser) =
        PcapNgParser::new(bytes).map_err(|e| first_error(crate_reason(&e, bytes.len())))?;
    let used = bytes.len() - rest.len();
    input.consume(used);
    let mut summary = CaptureSummary {
        frames: 0,
        other_blocks: 1,
    };
    let mut buf = Vec::new();
    loop {
        let record = summary.frames + summary.other_blocks + 1;
        let offset = input.offset;
        let record_error = |reason: String| CaptureError::Record {
            path: path.to_owned(),
            record,
            offset,
            reason,
        };
        if input.fill(1).map_err(read_error)?.is_empty() {
            break;
        }
        fill_block(&mut input, Some(parser.section().endianness))
            .map_err(read_error)?
            .map_err(record_error)?;
        let bytes = input.buffered();
        let (next, block) = parser
            .next_block(bytes)
            .map_err(|e| record_error(crate_reason(&e, bytes.len())))?;
        let used = bytes.len() - next.len();
        let (interface_id, units, data) = match &block {
            Block::EnhancedPacket(p) => (
                p.interface_id,
                // pcap-file stores the raw timestamp units in a Duration's nanoseconds.
                u64::try_from(p.timestamp.as_nanos()).unwrap_or(u64::MAX),
                &p.data[..],
            ),
            Block::Packet(p) => (u32::from(p.interface_id), p.timestamp, &p.data[..]),
            Block::SimplePacket(_) => {
                return Err(record_error(
                    "a simple packet block carries no timestamp, which the flow features need"
                        .into(),
                ));
            }
            _ => {
                summary.other_blocks += 1;
                input.consume(used);
                continue;
            }
        };
        let idb = parser
            .interfaces()
            .get(interface_id as usize)
            .ok_or_else(|| {
                record_error(format!(
                    "packet of interface {interface_id}, but the section describes {}",
                    parser.interfaces().len()
                ))
            })?;
        let interface = Interface::of(idb).map_err(record_error)?;
        let timestamp_ns = interface.nanoseconds(units).map_err(record_error)?;
        on_frame(&CapturedFrame {
            record,
            offset,
            timestamp_ns,
            frame: interface.link.ethernet(data, &mut buf),
        });
        summary.frames += 1;
        input.consume(used);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, time::Duration};

    use pcap_file::{
        Endianness, TsResolution,
        pcap::{PcapHeader, PcapPacket, PcapWriter},
        pcapng::{
            PcapNgBlock, PcapNgWriter,
            blocks::{enhanced_packet::EnhancedPacketBlock, simple_packet::SimplePacketBlock},
        },
    };

    use super::*;

    const P: &str = "t.cap";

    fn frames() -> Vec<(u64, Vec<u8>)> {
        (0..5u8)
            .map(|i| {
                let mut f = vec![i; 40 + i as usize];
                f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                (1_700_000_000_000_000_000 + u64::from(i) * 1_234_567, f)
            })
            .collect()
    }

    fn pcap(resolution: TsResolution, link: DataLink, endianness: Endianness) -> Vec<u8> {
        let header = PcapHeader {
            ts_resolution: resolution,
            datalink: link,
            endianness,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (ns, f) in frames() {
            w.write_packet(&PcapPacket::new(
                Duration::from_nanos(ns),
                f.len() as u32,
                &f,
            ))
            .unwrap();
        }
        w.into_writer()
    }

    /// A pcapng file whose interface counts time in `10^-resol` s (`None`: the default, us).
    fn pcapng(resol: Option<u8>, link: DataLink) -> Vec<u8> {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little).unwrap();
        let options = resol
            .map(|r| vec![InterfaceDescriptionOption::IfTsResol(r)])
            .unwrap_or_default();
        let idb = InterfaceDescriptionBlock {
            linktype: link,
            snaplen: 0xffff,
            options,
        };
        w.write_block(&idb.into_block()).unwrap();
        let per_unit = 10u64.pow(9 - u32::from(resol.unwrap_or(6)));
        for (ns, f) in frames() {
            let epb = EnhancedPacketBlock {
                interface_id: 0,
                // pcap-file writes a Duration's nanoseconds as the raw units.
                timestamp: Duration::from_nanos(ns / per_unit),
                original_len: f.len() as u32,
                data: Cow::Borrowed(&f),
                options: vec![],
            };
            w.write_block(&epb.into_block()).unwrap();
        }
        w.into_inner()
    }

    /// (record, timestamp, frame) of each frame read.
    type Frames = Vec<(u64, u64, Vec<u8>)>;

    fn read(bytes: &[u8]) -> Result<(CaptureSummary, Frames), CaptureError> {
        let mut out = Vec::new();
        let s = for_each_frame_in(bytes, Path::new(P), |f| {
            out.push((f.record, f.timestamp_ns, f.frame.to_vec()))
        })?;
        Ok((s, out))
    }

    #[test]
    fn pcap_in_both_resolutions_and_byte_orders() {
        for (res, step) in [
            (TsResolution::NanoSecond, 1),
            (TsResolution::MicroSecond, 1000),
        ] {
            for endianness in [Endianness::Big, Endianness::Little] {
                let (s, got) = read(&pcap(res, DataLink::ETHERNET, endianness)).unwrap();
                assert_eq!(s.frames, 5);
                for ((i, (ns, f)), (record, t, frame)) in frames().into_iter().enumerate().zip(got)
                {
                    assert_eq!(record, i as u64 + 1);
                    assert_eq!(t, ns / step * step, "{res:?} {endianness:?}");
                    assert_eq!(frame, f);
                }
            }
        }
    }

    #[test]
    fn pcapng_scales_timestamps_by_the_interface_resolution() {
        for resol in [None, Some(9), Some(3)] {
            let (s, got) = read(&pcapng(resol, DataLink::ETHERNET)).unwrap();
            assert_eq!(
                (s.frames, s.other_blocks),
                (5, 2),
                "section + interface blocks"
            );
            let per_unit = 10u64.pow(9 - u32::from(resol.unwrap_or(6)));
            for ((ns, f), (record, t, frame)) in frames().into_iter().zip(got) {
                assert_eq!(t, ns / per_unit * per_unit, "{resol:?}");
                assert_eq!(frame, f);
                assert!(record >= 3);
            }
        }
    }

    #[test]
    fn linux_cooked_frames_get_an_ethernet_header() {
        // SLL: 14 bytes of link info, the protocol, then the IP packet.
        let mut sll = vec![7u8; 14];
        sll.extend_from_slice(&0x86ddu16.to_be_bytes());
        sll.extend_from_slice(&[0x60, 1, 2, 3]);
        // SLL2: the protocol first, then 18 bytes of link info.
        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[9; 18]);
        sll2.extend_from_slice(&[0x45, 1, 2, 3]);
        let mut buf = Vec::new();
        let want = |proto: u16, ip: [u8; 4]| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&proto.to_be_bytes());
            f.extend_from_slice(&ip);
            f
        };
        assert_eq!(
            Link::LinuxSll.ethernet(&sll, &mut buf),
            want(0x86dd, [0x60, 1, 2, 3])
        );
        assert_eq!(
            Link::LinuxSll2.ethernet(&sll2, &mut buf),
            want(0x0800, [0x45, 1, 2, 3])
        );
        // Records shorter than their link header become runt frames, not panics.
        assert_eq!(Link::LinuxSll.ethernet(&sll[..15], &mut buf), [0u8; 12]);
        assert_eq!(Link::LinuxSll2.ethernet(&sll2[..5], &mut buf).len(), 14);
        // And whole files of them read back.
        let (_, got) = read(&pcap(
            TsResolution::NanoSecond,
            DataLink::LINUX_SLL,
            Endianness::Little,
        ))
        .unwrap();
        assert_eq!(got[0].2[..12], [0u8; 12]);
        assert_eq!(got[0].2[12..], frames()[0].1[14..]);
    }

    #[test]
    fn malformed_captures_name_the_record_and_offset() {
        let file = pcap(
            TsResolution::NanoSecond,
            DataLink::ETHERNET,
            Endianness::Little,
        );
        // Records: 24-byte header, then 16 + 40 + i bytes each; record 3 starts at 24+56+57.
        let e = read(&file[..24 + 56 + 57 + 20]).unwrap_err().to_string();
        assert_eq!(
            e,
            "t.cap: record 3 at byte offset 137: the file ends inside this record (20 bytes left)"
        );
        let mut bad = file.clone();
        bad[24 + 56 + 4..24 + 56 + 8].copy_from_slice(&2_000_000_000u32.to_le_bytes());
        assert_eq!(
            read(&bad).unwrap_err().to_string(),
            "t.cap: record 2 at byte offset 80: timestamp fraction 2000000000 is a second or more"
        );
        let mut bad = file.clone();
        bad[24 + 12..24 + 16].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            read(&bad).unwrap_err().to_string(),
            "t.cap: record 1 at byte offset 24: captured length 40 exceeds the original length 10"
        );
        assert!(
            read(b"GIF89a")
                .unwrap_err()
                .to_string()
                .starts_with("t.cap: not a pcap or pcapng file")
        );
        assert_eq!(
            read(&file[..10]).unwrap_err().to_string(),
            "t.cap: file header: the file ends inside this record (10 bytes left)"
        );
        let wifi = pcap(
            TsResolution::NanoSecond,
            DataLink::IEEE802_11,
            Endianness::Big,
        );
        assert!(
            read(&wifi)
                .unwrap_err()
                .to_string()
                .contains("link type 105 (IEEE802_11) is not supported"),
        );

        let ng = pcapng(Some(9), DataLink::ETHERNET);
        // Blocks: section header (28 bytes), interface (32), then packets.
        let e = read(&ng[..ng.len() - 3]).unwrap_err().to_string();
        assert!(e.starts_with("t.cap: record 7 at byte offset "), "{e}");
        let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little).unwrap();
        let spb = SimplePacketBlock {
            original_len: 4,
            data: Cow::Borrowed(&[1, 2, 3, 4]),
        };
        w.write_block(&spb.into_block()).unwrap();
        assert_eq!(
            read(&w.into_inner()).unwrap_err().to_string(),
            "t.cap: record 2 at byte offset 28: a simple packet block carries no timestamp, which \
             the flow features need"
        );
        let mut no_idb = ng[..28].to_vec();
        no_idb.extend_from_slice(&ng[28 + 32..]);
        assert_eq!(
            read(&no_idb).unwrap_err().to_string(),
            "t.cap: record 2 at byte offset 28: packet of interface 0, but the section describes 0"
        );
    }

    /// Hands out its bytes `step` at a time, like a pipe.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_capture_read_in_pieces_reads_the_same() {
        for file in [
            pcap(
                TsResolution::NanoSecond,
                DataLink::ETHERNET,
                Endianness::Big,
            ),
            pcapng(Some(9), DataLink::ETHERNET),
        ] {
            let want = read(&file).unwrap();
            for step in [1, 3, 7, 64] {
                let mut got = Vec::new();
                let s = read_capture(
                    Input::new(Trickle { bytes: &file, step }),
                    Path::new(P),
                    |f| got.push((f.record, f.timestamp_ns, f.frame.to_vec())),
                )
                .unwrap();
                assert_eq!((s, got), want, "{step} bytes at a time");
            }
        }
    }

    #[test]
    fn oversized_records_are_refused_before_they_are_read() {
        // A pcap header allowing any length, then a record claiming 2^31 bytes.
        let header = PcapHeader {
            snaplen: u32::MAX,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        let mut file = PcapWriter::with_header(Vec::new(), header)
            .unwrap()
            .into_writer();
        for field in [1u32, 0, 1 << 31, 1 << 31] {
            file.extend_from_slice(&field.to_le_bytes());
        }
        assert_eq!(
            read(&file).unwrap_err().to_string(),
            "t.cap: record 1 at byte offset 24: captured length 2147483648 is over npk's limit \
             of 262144 bytes (the largest snapshot length)"
        );
        let mut ng = pcapng(None, DataLink::ETHERNET);
        let at = ng.len();
        for field in [6u32, 0xffff_fff0] {
            ng.extend_from_slice(&field.to_le_bytes());
        }
        assert_eq!(
            read(&ng).unwrap_err().to_string(),
            format!(
                "t.cap: record 8 at byte offset {at}: block length 4294967280 is over npk's \
                 limit of 16777216 bytes"
            )
        );
    }

    #[test]
    fn no_corruption_or_truncation_panics() {
        for file in [
            pcap(
                TsResolution::MicroSecond,
                DataLink::ETHERNET,
                Endianness::Big,
            ),
            pcapng(Some(9), DataLink::LINUX_SLL2),
        ] {
            for n in 0..file.len() {
                let _ = read(&file[..n]);
            }
            for i in 0..file.len() {
                for v in [0u8, 0x7f, 0xff] {
                    let mut bad = file.clone();
                    bad[i] = v;
                    let _ = read(&bad);
                }
            }
        }
    }
}
