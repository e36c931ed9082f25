//! Feature vectors in userspace, computed exactly as the kernel computes them: the same
//! [`parse`] and [`observe`] from npk-common over flow, host and service tables keyed like the
//! kernel's.
//!
//! One difference remains by design: the kernel's tables are LRUs of
//! [`npk_common::maps::FLOW_CAPACITY`] flows, [`npk_common::maps::HOST_CAPACITY`] hosts and
//! [`npk_common::maps::SERVICE_CAPACITY`] services, these never evict, so the two agree while
//! fewer than that are live.

use std::{collections::HashMap, io::Write};

use crate::{
    dataset::{Dataset, Standardizer},
    output::{AtomicOutput, OutputError, OutputErrorKind, OutputPath},
};

use npk_common::{
    host::{HostState, ServiceKey, ServiceState},
    packet::{
        FEATURE_NAMES, FlowKey, FlowState, Headers, NUM_FEATURES, PacketState, ParseError,
        observe_all, observe_reply, parse,
    },
};

/// State of every flow, sending host and service seen so far.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: HashMap<FlowKey, FlowState>,
    hosts: HashMap<[u8; 16], HostState>,
    services: HashMap<ServiceKey, ServiceState>,
}

impl FlowTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `frame` (Ethernet) seen at `now_ns`, updates its flow and returns its features and
    /// flow key; frames the kernel would not classify give the parser's reason.
    pub fn observe(
        &mut self,
        frame: &[u8],
        now_ns: u64,
    ) -> Result<(FlowKey, [i32; NUM_FEATURES]), ParseError> {
        let h = parse(frame)?;
        let mut out = [0; NUM_FEATURES];
        self.observe_headers(&h, now_ns, &mut out);
        Ok((h.key, out))
    }

    /// Updates the packet's flow, host and service with parsed headers; writes its features.
    pub fn observe_headers(&mut self, h: &Headers, now_ns: u64, out: &mut [i32; NUM_FEATURES]) {
        let state = PacketState {
            flow: self.flows.entry(h.key).or_default(),
            host: self.hosts.entry(h.key.src).or_default(),
            service: self.services.entry(h.key.service()).or_default(),
        };
        observe_all(h, state, now_ns, out);
    }

    /// Counts a frame this machine sent at `now_ns` (see [`observe_reply`]); a frame that
    /// does not parse counts nothing, as in the kernel.
    pub fn observe_reply(&mut self, frame: &[u8], now_ns: u64) -> Result<(), ParseError> {
        let h = parse(frame)?;
        self.observe_reply_headers(&h, now_ns);
        Ok(())
    }

    /// [`FlowTable::observe_reply`] with parsed headers.
    pub fn observe_reply_headers(&mut self, h: &Headers, now_ns: u64) {
        observe_reply(
            self.flows.get_mut(&h.key.reversed()),
            self.hosts.get_mut(&h.key.dst),
            now_ns,
        );
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// How many IP frames [`LocalGuess`] looks at.
pub const LOCAL_GUESS_FRAMES: usize = 10_000;

/// Finds the machine a capture was taken on, to tell its replies from what it received: the
/// address that is the source or destination of at least 90% of the capture's first
/// [`LOCAL_GUESS_FRAMES`] IP frames, as every frame at a host's own interface is. A capture
/// of one direction only (`tcpdump -Q in`) finds it too, and simply holds no replies.
#[derive(Debug, Default)]
pub struct LocalGuess {
    counts: HashMap<[u8; 16], u64>,
    frames: u64,
}

impl LocalGuess {
    pub fn add(&mut self, key: &FlowKey) {
        self.frames += 1;
        *self.counts.entry(key.src).or_default() += 1;
        if key.dst != key.src {
            *self.counts.entry(key.dst).or_default() += 1;
        }
    }

    /// The local address, if one address is in at least 90% of the frames added.
    pub fn local(&self) -> Option<[u8; 16]> {
        let (addr, &count) = self.counts.iter().max_by_key(|&(a, c)| (c, *a))?;
        (count * 10 >= self.frames * 9).then_some(*addr)
    }
}

/// The standardization for a packet model: per-feature mean and std of `train`, with the means
/// rounded to integers. The kernel centres each raw (integer) feature on an integer offset, the
/// mean rounded, and the quantizer leaves the rounding out of the first layer's bias; for
/// features with a small spread (SYN counts, flags) that half-unit shift is up to a standard
/// deviation. Trained on integer means, the float model sees what the kernel computes: measured
/// on one demo capture over 5 seeds, int8/float agreement went from 0.9945-0.9996 to 1.0000.
pub fn packet_standardizer(train: &Dataset) -> Standardizer {
    let mut s = Standardizer::fit(train);
    s.mean.iter_mut().for_each(|m| *m = m.round());
    s
}

/// Frames that produced no feature vector, by reason (the kernel counts them the same way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub non_ip: u64,
    pub truncated: u64,
    pub malformed: u64,
}

impl Skipped {
    pub fn count(&mut self, e: ParseError) {
        match e {
            ParseError::NotIp => self.non_ip += 1,
            ParseError::Truncated => self.truncated += 1,
            ParseError::Malformed => self.malformed += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.non_ip + self.truncated + self.malformed
    }
}

/// Writes labelled feature rows as CSV: a header of [`FEATURE_NAMES`] and `label`, then one row
/// per packet. `npk train` recognizes the header and trains a packet model.
///
/// The first write error is kept and reported by [`FeatureCsv::finish`]; rows after it are
/// dropped, so producers (packet loops, ring-buffer drains) need no error path of their own.
pub struct FeatureCsv<W: Write> {
    out: csv::Writer<W>,
    rows: u64,
    error: Option<std::io::Error>,
}

impl FeatureCsv<AtomicOutput> {
    /// A CSV for `out`, which shows it only once [committed](Self::commit).
    pub fn create(out: &OutputPath) -> Result<Self, OutputError> {
        let file = out.create()?;
        Self::new(file).map_err(|e| OutputError {
            path: out.path().to_owned(),
            kind: OutputErrorKind::Write(e),
        })
    }

    /// Finishes the CSV and makes it the output (see [`AtomicOutput::commit`]).
    pub fn commit(self) -> Result<(), OutputError> {
        let path = self.out.get_ref().path().to_owned();
        self.finish()
            .map_err(|e| OutputError {
                path,
                kind: OutputErrorKind::Write(e),
            })?
            .commit()
    }
}

impl<W: Write> FeatureCsv<W> {
    pub fn new(out: W) -> std::io::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(FEATURE_NAMES.iter().chain(&["label"]))?;
        Ok(Self {
            out,
            rows: 0,
            error: None,
        })
    }

    pub fn write(&mut self, features: &[i32; NUM_FEATURES], label: u32) {
        if self.error.is_some() {
            return;
        }
        let mut cells = [0i64; NUM_FEATURES + 1];
        for (c, &f) in cells.iter_mut().zip(features) {
            *c = i64::from(f);
        }
        cells[NUM_FEATURES] = i64::from(label);
        match self.out.serialize(cells) {
            Ok(()) => self.rows += 1,
            Err(e) => self.error = Some(std::io::Error::other(e)),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes everything to the underlying writer, or reports the first write error.
    pub fn finish(mut self) -> std::io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()?;
        self.out
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::packets::synth::{FrameSpec, v4_mapped};
    use npk_common::{host::log2_q3, packet::PROTO_UDP};

    fn udp(src_port: u16, payload: usize) -> Vec<u8> {
        FrameSpec {
            key: FlowKey {
                src: v4_mapped([10, 0, 0, 1]),
                dst: v4_mapped([10, 0, 0, 2]),
                src_port,
                dst_port: 53,
                protocol: PROTO_UDP,
                _pad: [0; 3],
            },
            ipv6: false,
            vlan: None,
            options: 0,
            tcp_flags: 0,
            ttl: 64,
            payload,
        }
        .build()
    }

    #[test]
    fn flows_are_tracked_per_five_tuple() {
        let mut t = FlowTable::new();
        let (_, a1) = t.observe(&udp(1000, 10), 1_000_000).unwrap();
        let (_, b1) = t.observe(&udp(2000, 30), 1_100_000).unwrap();
        let (_, a2) = t.observe(&udp(1000, 30), 1_250_000).unwrap();
        // flow_packets_log2, flow_mean_size, flow_iat_log2
        assert_eq!((a1[9], b1[9], a2[9]), (log2_q3(1), log2_q3(1), log2_q3(2)));
        assert_eq!(
            a2[11],
            log2_q3(250),
            "250 us since the flow's previous packet"
        );
        assert_eq!(a2[10], 0, "no sizes for UDP (schema v4 on)");
        assert_eq!(t.len(), 2);
        assert_eq!(t.observe(&[0u8; 10], 0), Err(ParseError::Truncated));
    }

    #[test]
    fn csv_round_trips_through_the_dataset_loader() {
        let mut t = FlowTable::new();
        let mut csv = FeatureCsv::new(Vec::new()).unwrap();
        for (i, port) in [1000u16, 2000, 1000].into_iter().enumerate() {
            let (_, f) = t.observe(&udp(port, 20), i as u64 * 1000).unwrap();
            csv.write(&f, i as u32 % 2);
        }
        assert_eq!(csv.rows(), 3);
        let bytes = csv.finish().unwrap();
        let d = Dataset::from_reader(&bytes[..], Path::new("f.csv")).unwrap();
        assert_eq!(d.feature_names, FEATURE_NAMES);
        assert_eq!(d.labels, [0, 1, 0]);
        assert_eq!(d.row(2)[9], log2_q3(2) as f32);
    }
}
