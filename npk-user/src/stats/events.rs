//! What the classifier decided for the packets it sampled, as `npk events` shows them: the
//! kernel samples every dropped packet (unless the attachment said `--no-drop-events`), the
//! packets of `sample` classes and, with `sample_unsure`, the drops let through under the drop
//! margin, at most `--event-rate` per second per CPU; [`Sample`] carries the flow's addresses,
//! ports and protocol, the class, margin and model version, and what was done.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use npk_common::maps::Sample;
use serde_json::json;

use crate::{kernel::attach::IfaceName, sys::monotonic_ns};

/// What the kernel did with a sampled packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventAction {
    /// Its class's action is drop and the model was confident.
    Dropped,
    /// Its class's action is drop, but the margin was below the drop margin: passed.
    PassedUnsure,
    /// Passed: a `sample` class, or every packet sampled (`npk capture`).
    Passed,
}

impl EventAction {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Dropped => "drop",
            Self::PassedUnsure => "pass-unsure",
            Self::Passed => "pass",
        }
    }
}

/// One sampled packet, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub time: SystemTime,
    pub iface: IfaceName,
    pub action: EventAction,
    pub class: u32,
    /// The int8 logit lead of `class` over the runner-up.
    pub margin: u32,
    /// The verdict came from the flow's cache, not from this packet's features.
    pub cached: bool,
    pub model_version: u32,
    /// The IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TCP and UDP only.
    pub ports: Option<(u16, u16)>,
}

/// Turns the kernel's CLOCK_MONOTONIC stamps into wall-clock times: the offset between the
/// two clocks, read once (a clock step while `npk events` runs shifts later times by it).
#[derive(Clone, Copy, Debug)]
pub struct KernelClock {
    offset_ns: i128,
}

impl KernelClock {
    pub fn now() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Self {
            offset_ns: unix - i128::from(monotonic_ns()),
        }
    }

    pub fn wall(self, monotonic_ns: u64) -> SystemTime {
        let ns = (i128::from(monotonic_ns) + self.offset_ns).max(0);
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// An address as the flow key holds it: IPv4 mapped into IPv6.
fn address(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

impl Event {
    pub fn of(sample: &Sample, iface: &IfaceName, clock: KernelClock) -> Self {
        let key = &sample.flow;
        let action = if sample.dropped != 0 {
            EventAction::Dropped
        } else if sample.unsure != 0 {
            EventAction::PassedUnsure
        } else {
            EventAction::Passed
        };
        Self {
            time: clock.wall(sample.timestamp_ns),
            iface: iface.clone(),
            action,
            class: sample.class,
            margin: sample.margin,
            cached: sample.cached != 0,
            model_version: sample.model_version,
            protocol: key.protocol,
            src: address(key.src),
            dst: address(key.dst),
            ports: matches!(key.protocol, 6 | 17).then_some((key.src_port, key.dst_port)),
        }
    }

    fn protocol_name(&self) -> String {
        match self.protocol {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "icmpv6".into(),
            p => format!("ip-proto-{p}"),
        }
    }

    /// One JSON object (one line of `npk events --json`).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "type": "packet",
            "time": rfc3339(self.time),
            "iface": self.iface.as_str(),
            "action": self.action.name(),
            "class": self.class,
            "margin": self.margin,
            "cached": self.cached,
            "model_version": self.model_version,
            "protocol": self.protocol_name(),
            "src": self.src.to_string(),
            "src_port": self.ports.map(|p| p.0),
            "dst": self.dst.to_string(),
            "dst_port": self.ports.map(|p| p.1),
        })
    }

    /// One line of `npk events`.
    pub fn line(&self) -> String {
        let endpoint = |ip: IpAddr, port: Option<u16>| match (ip, port) {
            (IpAddr::V6(ip), Some(port)) => format!("[{ip}]:{port}"),
            (ip, Some(port)) => format!("{ip}:{port}"),
            (ip, None) => ip.to_string(),
        };
        format!(
            "{} {} {} class {} margin {}{} {} {} -> {} model v{}",
            rfc3339(self.time),
            self.iface.as_str(),
            self.action.name(),
            self.class,
            self.margin,
            if self.cached { " (cached)" } else { "" },
            self.protocol_name(),
            endpoint(self.src, self.ports.map(|p| p.0)),
            endpoint(self.dst, self.ports.map(|p| p.1)),
            self.model_version,
        )
    }
}

/// `time` as RFC 3339 in UTC with microseconds, e.g. `2026-12-07T20:31:05.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`: eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use npk_common::packet::FlowKey;

    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, "2000-02-29T00:00:00.000000Z"),
            (1_796_674_265, "2026-12-07T20:11:05.000000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000000Z"),
        ] {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), text);
        }
        let t = UNIX_EPOCH + Duration::from_nanos(1_500_000_000_123_456_789);
        assert_eq!(rfc3339(t), "2017-07-14T02:40:00.123456Z");
    }

    #[test]
    fn a_sample_decodes_to_addresses_ports_and_what_was_done() {
        let mut flow: FlowKey = bytemuck::Zeroable::zeroed();
        flow.src[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 2]);
        flow.dst[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        (flow.src_port, flow.dst_port, flow.protocol) = (40_000, 53, 17);
        let mut sample: Sample = bytemuck::Zeroable::zeroed();
        (sample.flow, sample.class, sample.margin) = (flow, 2, 4_100);
        (sample.model_version, sample.dropped, sample.timestamp_ns) = (7, 1, 5_000);
        let iface: IfaceName = "eth0".parse().unwrap();
        let clock = KernelClock {
            offset_ns: 1_796_674_265_000_000_000,
        };
        let e = Event::of(&sample, &iface, clock);
        assert_eq!(e.action, EventAction::Dropped);
        assert_eq!(
            e.line(),
            "2026-12-07T20:11:05.000005Z eth0 drop class 2 margin 4100 udp 10.0.0.2:40000 -> \
             10.0.0.1:53 model v7"
        );
        let json = e.to_json();
        assert_eq!(json["src"], "10.0.0.2");
        assert_eq!(json["dst_port"], 53);
        assert_eq!(json["action"], "drop");

        sample.dropped = 0;
        sample.unsure = 1;
        sample.flow.protocol = 1;
        sample.flow.src = [0xfd; 16];
        let e = Event::of(&sample, &iface, clock);
        assert_eq!(e.action, EventAction::PassedUnsure);
        assert_eq!(e.ports, None);
        assert!(
            e.line()
                .contains(" icmp fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd:fdfd -> 10.0.0.1 ")
        );
        assert_eq!(e.to_json()["src_port"], serde_json::Value::Null);
    }
}
