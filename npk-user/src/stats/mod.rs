//! The classifier's counters described once: name, meaning and unit of every field of
//! [`npk_common::maps::Counters`]. `npk stats` (its line and `--json`), the demo's live table
//! and `npk exporter` read the counters through these tables, so a counter means one thing in
//! all of them.
//!
//! "packets" ([`PACKETS`]) is every frame the classifier ran on, whatever came of it; the
//! per-class counters count the classified ones (IP frames given a class, by an inference or
//! by the flow's cached verdict); the others count one outcome each.

pub mod events;
pub mod exporter;

use npk_common::{maps::Counters, model::MAX_CLASSES};

/// What a counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Packets,
    Bytes,
    Inferences,
    Samples,
}

impl Unit {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Packets => "packets",
            Self::Bytes => "bytes",
            Self::Inferences => "inferences",
            Self::Samples => "samples",
        }
    }
}

/// One counter of an attachment.
pub struct CounterDesc {
    /// The field of `npk stats --json`.
    pub key: &'static str,
    /// The Prometheus name without the `_total` of counters (unit included).
    pub metric: &'static str,
    pub help: &'static str,
    pub unit: Unit,
    pub read: fn(&Counters) -> u64,
}

/// One counter per class (a class label in the exporter, an array in `npk stats --json`).
pub struct ClassCounterDesc {
    pub key: &'static str,
    pub metric: &'static str,
    pub help: &'static str,
    pub unit: Unit,
    pub read: fn(&Counters) -> &[u64; MAX_CLASSES],
}

/// Every frame the classifier ran on: the classified ones and every other outcome. The
/// classifier counts each frame in exactly one of these.
pub fn packets(c: &Counters) -> u64 {
    classified(c) + c.non_ip + c.unparsed + c.truncated + c.no_model + c.swap_failures
}

/// Frames given a class (inferred or cached).
pub fn classified(c: &Counters) -> u64 {
    c.class_packets.iter().sum()
}

pub const PACKETS: CounterDesc = CounterDesc {
    key: "packets",
    metric: "npk_packets",
    help: "Frames the classifier ran on, whatever came of them",
    unit: Unit::Packets,
    read: packets,
};

pub const CLASS_COUNTERS: [ClassCounterDesc; 2] = [
    ClassCounterDesc {
        key: "class_packets",
        metric: "npk_class_packets",
        help: "Frames given this class (by an inference or the flow's cached verdict)",
        unit: Unit::Packets,
        read: |c| &c.class_packets,
    },
    ClassCounterDesc {
        key: "class_bytes",
        metric: "npk_class_bytes",
        help: "Bytes on the wire of the frames given this class",
        unit: Unit::Bytes,
        read: |c| &c.class_bytes,
    },
];

/// Every other counter, in `npk stats --json` order after `packets` and `pps`.
pub const COUNTERS: [CounterDesc; 13] = [
    PACKETS,
    CounterDesc {
        key: "dropped",
        metric: "npk_dropped_packets",
        help: "Frames dropped (by a class's drop action, or failed with --fail-closed)",
        unit: Unit::Packets,
        read: |c| c.dropped,
    },
    CounterDesc {
        key: "unsure",
        metric: "npk_unsure_packets",
        help: "Frames of a drop class passed: the model's margin was below its drop margin",
        unit: Unit::Packets,
        read: |c| c.unsure,
    },
    CounterDesc {
        key: "non_ip",
        metric: "npk_non_ip_packets",
        help: "Frames that are not IP (ARP, ...): always passed",
        unit: Unit::Packets,
        read: |c| c.non_ip,
    },
    CounterDesc {
        key: "unparsed",
        metric: "npk_unparsed_packets",
        help: "IP frames with an impossible header",
        unit: Unit::Packets,
        read: |c| c.unparsed,
    },
    CounterDesc {
        key: "truncated",
        metric: "npk_truncated_packets",
        help: "Frames that ended inside a header",
        unit: Unit::Packets,
        read: |c| c.truncated,
    },
    CounterDesc {
        key: "no_model",
        metric: "npk_no_model_packets",
        help: "Frames seen with no model loaded",
        unit: Unit::Packets,
        read: |c| c.no_model,
    },
    CounterDesc {
        key: "inferences",
        metric: "npk_inferences",
        help: "Inferences run (the other classified frames used the flow's cached verdict)",
        unit: Unit::Inferences,
        read: |c| c.inferences,
    },
    CounterDesc {
        key: "cache_hits",
        metric: "npk_cache_hit_packets",
        help: "Frames classified by the flow's cached verdict (--reinfer above 1)",
        unit: Unit::Packets,
        read: |c| c.cache_hits,
    },
    CounterDesc {
        key: "swap_retries",
        metric: "npk_swap_retry_inferences",
        help: "Inferences run again because a push rewrote the model slot under them",
        unit: Unit::Inferences,
        read: |c| c.swap_retries,
    },
    CounterDesc {
        key: "swap_failures",
        metric: "npk_swap_failure_packets",
        help: "Frames given the fail action because pushes kept rewriting the slot",
        unit: Unit::Packets,
        read: |c| c.swap_failures,
    },
    CounterDesc {
        key: "samples_lost",
        metric: "npk_lost_samples",
        help: "Samples lost because the ring buffer was full",
        unit: Unit::Samples,
        read: |c| c.samples_lost,
    },
    CounterDesc {
        key: "samples_limited",
        metric: "npk_limited_samples",
        help: "Samples not taken: over the attachment's samples per second per CPU",
        unit: Unit::Samples,
        read: |c| c.samples_limited,
    },
];

/// The counters of one attachment at one moment, as `npk stats` shows them.
pub struct Snapshot {
    pub counters: Counters,
    /// Classes of the active model (the per-class arrays are cut to it).
    pub classes: usize,
    /// Frames per second since the previous snapshot (`--watch`).
    pub pps: Option<f64>,
    /// Mean ns per program run from the kernel's run_time_ns / run_cnt (None when
    /// kernel.bpf_stats_enabled is off).
    pub avg_ns_per_packet: Option<f64>,
}

impl Snapshot {
    /// `npk stats --json`: one field per counter, from the tables.
    pub fn to_json(&self) -> serde_json::Value {
        let classes = self.classes.min(MAX_CLASSES);
        let mut o = serde_json::Map::new();
        for d in &CLASS_COUNTERS {
            o.insert(d.key.into(), (d.read)(&self.counters)[..classes].into());
        }
        o.insert(PACKETS.key.into(), packets(&self.counters).into());
        o.insert("pps".into(), self.pps.into());
        for d in COUNTERS.iter().skip(1) {
            o.insert(d.key.into(), (d.read)(&self.counters).into());
        }
        o.insert("avg_ns_per_packet".into(), self.avg_ns_per_packet.into());
        o.into()
    }

    /// The one-line summary of `npk stats`.
    pub fn line(&self) -> String {
        let c = &self.counters;
        let per_class: Vec<String> = c.class_packets[..self.classes.min(MAX_CLASSES)]
            .iter()
            .enumerate()
            .map(|(class, n)| format!("c{class}={n}"))
            .collect();
        format!(
            "packets {} [{}] dropped {} | pps {} | unparsed {} truncated {} non-ip {} | {}",
            packets(c),
            per_class.join(" "),
            c.dropped,
            self.pps.map_or("-".into(), |p| format!("{p:.0}")),
            c.unparsed,
            c.truncated,
            c.non_ip,
            self.avg_ns_per_packet
                .map_or("ns/packet -".into(), |n| format!("{n:.0} ns/packet")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters whose every field holds a distinct value (its index + 1).
    fn distinct() -> Counters {
        let mut c: Counters = bytemuck::Zeroable::zeroed();
        let words: &mut [u64] = bytemuck::cast_slice_mut(std::slice::from_mut(&mut c));
        for (i, w) in words.iter_mut().enumerate() {
            *w = i as u64 + 1;
        }
        c
    }

    #[test]
    fn the_tables_read_every_field_once() {
        let c = distinct();
        let mut seen: Vec<u64> = CLASS_COUNTERS
            .iter()
            .flat_map(|d| (d.read)(&c).to_vec())
            .collect();
        seen.extend(COUNTERS.iter().skip(1).map(|d| (d.read)(&c)));
        seen.sort_unstable();
        let words = std::mem::size_of::<Counters>() / 8;
        assert_eq!(seen, (1..=words as u64).collect::<Vec<_>>());
    }

    #[test]
    fn packets_count_every_outcome_once() {
        let mut c: Counters = bytemuck::Zeroable::zeroed();
        c.class_packets[1] = 5;
        c.non_ip = 1;
        c.unparsed = 2;
        c.truncated = 3;
        c.no_model = 4;
        c.swap_failures = 6;
        // Neither is a frame of its own: drops and cache hits are classified (or failed) frames.
        c.dropped = 5;
        c.cache_hits = 2;
        assert_eq!(packets(&c), 21);
    }

    #[test]
    fn sums_add_every_field() {
        let c = distinct();
        let total = Counters::sum([c, c, c].iter());
        let words: &[u64] = bytemuck::cast_slice(std::slice::from_ref(&total));
        for (i, w) in words.iter().enumerate() {
            assert_eq!(*w, 3 * (i as u64 + 1));
        }
    }

    #[test]
    fn json_keeps_the_fields_of_npk_stats() {
        let s = Snapshot {
            counters: distinct(),
            classes: 3,
            pps: None,
            avg_ns_per_packet: Some(12.5),
        };
        let json = s.to_json();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for key in [
            "class_packets",
            "class_bytes",
            "packets",
            "pps",
            "dropped",
            "unsure",
            "non_ip",
            "unparsed",
            "truncated",
            "no_model",
            "inferences",
            "cache_hits",
            "swap_retries",
            "swap_failures",
            "samples_lost",
            "samples_limited",
            "avg_ns_per_packet",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        assert_eq!(json["class_packets"], serde_json::json!([1, 2, 3]));
        assert_eq!(json["packets"], packets(&s.counters));
    }
}
