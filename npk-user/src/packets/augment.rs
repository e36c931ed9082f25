//! Rate jitter: training rows of packet features copied at other speeds and burstiness.
//!
//! A lab run sends at the rates its tools were given; a model trained on it learns those rates
//! as well as the behaviour (measured: the held-out families' DNS and web clients, faster than
//! any training run's, read as scans and floods). Each training row gets a copy as if its host
//! and service sent `2^k` times as fast, `k` drawn per row from -4..=4 in steps of 1/8 (x1/16
//! to x16): every log rate moves by `8k` (a rate of 0, no such event, stays 0), the host's mean
//! log gap by `-8k` steps of 1/16 and the flow's gap by `-8k` (its first packet's "no gap"
//! stays); and the host's pacing deviation (how bursty it is: dig's batch, iperf3's pacing
//! timer) is scaled by x0.25-x4, drawn apart. Counts, flags, sizes, distinct ports and hosts
//! and the reply balances (ratios) are left as they are. The model then has to tell a flood
//! from a client by what does not change with a tool's settings.
//!
//! The ranges were chosen on recordings of the held-out protocol's sets 40 and 50-52 (x4 and
//! no burstiness jitter first; x16 with it was better on both families there): its results
//! count only on sets recorded after that choice (see docs/evaluation.md).

use crate::{dataset::Dataset, rng::Rng};
use npk_common::{
    host::GAP_ONE,
    packet::{FEATURE_NAMES, IAT_NONE_US},
};

/// The largest shift, in `log2_q3` steps (8 per doubling): x16 either way.
pub const MAX_RATE_SHIFT: i64 = 32;

/// The largest change of the pacing deviation, in eighths of a doubling: x4 either way.
pub const MAX_BURST_SHIFT: i64 = 16;

/// Columns that hold a `log2_q3` rate: shifted by `+k`.
const RATE_COLUMNS: [&str; 7] = [
    "host_pkt_rate",
    "host_byte_rate",
    "host_syn_rate",
    "host_new_flow_rate",
    "host_icmp_rate",
    "svc_new_flow_rate",
    "svc_syn_rate",
];

/// `rows` followed by one rate-jittered copy of each (see the module docs); the same rows when
/// they are not packet features. Deterministic in `seed`.
pub fn with_rate_jitter(rows: &Dataset, seed: u64) -> Dataset {
    let index = |name: &str| rows.feature_names.iter().position(|n| n == name);
    let (Some(gap), Some(gap_dev), Some(iat)) = (
        index("host_gap_mean"),
        index("host_gap_dev"),
        index("flow_iat_log2"),
    ) else {
        return rows.clone();
    };
    if rows.feature_names.len() > FEATURE_NAMES.len()
        || rows.feature_names[..] != FEATURE_NAMES[..rows.feature_names.len()]
    {
        return rows.clone();
    }
    let rates: Vec<usize> = RATE_COLUMNS.iter().filter_map(|c| index(c)).collect();
    let no_gap = npk_common::host::log2_q3(u64::from(IAT_NONE_US)) as f32;
    let mut rng = Rng::new(seed ^ 0x7261_7465_6a69_7474);
    let n = rows.num_features;
    let mut out = rows.clone();
    out.features.reserve(rows.features.len());
    out.labels.extend_from_slice(&rows.labels);
    for row in rows.features.chunks_exact(n) {
        let k = rng.range_i64(-MAX_RATE_SHIFT, MAX_RATE_SHIFT) as f32;
        let mut copy = row.to_vec();
        for &c in &rates {
            if copy[c] > 0.0 {
                copy[c] = (copy[c] + k).max(1.0);
            }
        }
        if copy[gap] > 0.0 {
            copy[gap] = (copy[gap] - k * GAP_ONE as f32).max(0.0);
        }
        if copy[iat] != no_gap {
            copy[iat] = (copy[iat] - k).clamp(0.0, no_gap);
        }
        // How bursty a sender is depends on its tool's settings too (dig's batch, iperf3's
        // pacing timer): scaled by 0.25x-4x, independently of the speed.
        let burst = rng.range_i64(-MAX_BURST_SHIFT, MAX_BURST_SHIFT) as f32 / 8.0;
        copy[gap_dev] = (copy[gap_dev] * burst.exp2()).round();
        out.features.extend_from_slice(&copy);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_rows(rows: &[[f32; npk_common::packet::NUM_FEATURES]]) -> Dataset {
        Dataset {
            feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            features: rows.iter().flatten().copied().collect(),
            labels: (0..rows.len() as u32).collect(),
            num_features: FEATURE_NAMES.len(),
            num_classes: rows.len(),
        }
    }

    #[test]
    fn copies_move_rates_and_gaps_together_and_nothing_else() {
        let col = |name: &str| FEATURE_NAMES.iter().position(|&n| n == name).unwrap();
        let mut row = [7.0f32; npk_common::packet::NUM_FEATURES];
        row[col("host_pkt_rate")] = 120.0;
        row[col("host_icmp_rate")] = 0.0; // no ICMP: stays none
        row[col("host_gap_mean")] = 2000.0;
        row[col("flow_iat_log2")] = 60.0;
        let data = packet_rows(&[row, row]);
        let out = with_rate_jitter(&data, 3);
        assert_eq!(out.len(), 4);
        assert_eq!(out.labels, [0, 1, 0, 1]);
        assert_eq!(out.row(0), &row[..]);
        for i in 2..4 {
            let copy = out.row(i);
            let k = copy[col("host_pkt_rate")] - 120.0;
            assert!(k.abs() <= MAX_RATE_SHIFT as f32);
            assert_eq!(copy[col("host_icmp_rate")], 0.0);
            assert_eq!(copy[col("host_gap_mean")], 2000.0 - k * GAP_ONE as f32);
            assert_eq!(copy[col("flow_iat_log2")], 60.0 - k);
            let burst = copy[col("host_gap_dev")] / 7.0;
            assert!((0.25..=4.0).contains(&burst) || copy[col("host_gap_dev")] <= 28.0);
            for name in ["flow_packets_log2", "host_dst_ports", "host_reply_balance"] {
                assert_eq!(copy[col(name)], 7.0, "{name}");
            }
        }
        // Deterministic in the seed.
        assert_eq!(with_rate_jitter(&data, 3).features, out.features);
    }

    #[test]
    fn tabular_rows_are_left_alone() {
        let data = Dataset {
            feature_names: vec!["a".into(), "b".into()],
            features: vec![1.0, 2.0],
            labels: vec![0],
            num_features: 2,
            num_classes: 1,
        };
        assert_eq!(with_rate_jitter(&data, 1).features, data.features);
    }
}
