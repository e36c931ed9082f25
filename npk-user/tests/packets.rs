//! `npk features`, `npk capture` and `npk gen` against the real kernel (root): a capture's
//! features equal the kernel's bit for bit, live capture and generated traffic make CSVs that
//! `npk train` turns into models the classifier accepts, bad input gets a clear error.

use std::{
    borrow::Cow,
    net::UdpSocket,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use npk::{
    dataset::Dataset,
    kernel::{Classifier, ProgramKind},
    model_file::ModelFile,
    netlab::NetLab,
    packets::{
        capture::pass_model,
        synth::{flow_pool, random_frame},
    },
    rng::Rng,
};
use npk_common::{
    maps::{Config, FLAG_RECORD_LAST, Outcome},
    model::FeatureSchema,
    packet::{FEATURE_NAMES, NUM_FEATURES},
};
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgBlock, PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
    },
};

const NPK: &str = env!("CARGO_BIN_EXE_npk");

#[track_caller]
fn npk(args: &[&str]) -> Output {
    Command::new(NPK).args(args).output().expect("run npk")
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = npk(args);
    assert!(
        out.status.success(),
        "npk {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[track_caller]
fn fails(args: &[&str]) -> String {
    let out = npk(args);
    assert!(!out.status.success(), "npk {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// Rows of a feature CSV, checked to have the packet header.
#[track_caller]
fn csv_rows(path: &Path) -> Vec<Vec<i64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let mut header: Vec<&str> = FEATURE_NAMES.to_vec();
    header.push("label");
    assert_eq!(lines.next().unwrap(), header.join(","));
    lines
        .map(|l| l.split(',').map(|c| c.parse().unwrap()).collect())
        .collect()
}

/// Frames run through the kernel classifier (TEST_RUN) one by one: each frame with the
/// kernel's clock at that packet and, when it classified it, the features it computed.
fn through_the_kernel(frames: usize) -> Vec<(Vec<u8>, u64, Option<[i32; NUM_FEATURES]>)> {
    let mut c = Classifier::load(ProgramKind::Xdp).unwrap();
    c.push(&pass_model()).unwrap();
    c.set_config(&Config {
        flags: FLAG_RECORD_LAST,
        ..Config::default()
    })
    .unwrap();
    let mut rng = Rng::new(42);
    // Few flows, so each gets many packets and the flow features grow.
    let flows = flow_pool(&mut rng, 40);
    let mut out = Vec::new();
    let mut now = 0;
    for _ in 0..frames {
        let (_, frame) = random_frame(&mut rng, &flows, 14);
        c.test_run(&frame, 1).unwrap();
        let r = c.last_record().unwrap();
        let features = (r.outcome == Outcome::Classified as u32).then(|| {
            now = r.now_ns;
            r.features
        });
        out.push((frame, now, features));
    }
    out
}

#[test]
fn features_from_a_capture_equal_the_kernels_bit_for_bit() {
    let packets = through_the_kernel(3000);
    let want: Vec<&[i32; NUM_FEATURES]> = packets.iter().filter_map(|p| p.2.as_ref()).collect();
    assert!(
        want.len() > 2000 && want.len() < packets.len(),
        "a mix of frames"
    );
    let dir = tempfile::tempdir().unwrap();

    // pcap with nanosecond timestamps, the kernel's clock as capture time.
    let header = PcapHeader {
        ts_resolution: TsResolution::NanoSecond,
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut pcap = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (frame, ns, _) in &packets {
        pcap.write_packet(&PcapPacket::new(
            Duration::from_nanos(*ns),
            frame.len() as u32,
            frame,
        ))
        .unwrap();
    }
    // pcapng, nanosecond interface; and Linux cooked (SLL) framing of the same packets.
    let mut ng = PcapNgWriter::with_endianness(Vec::new(), Endianness::Big).unwrap();
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0xffff,
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    };
    ng.write_block(&idb.into_block()).unwrap();
    let header = PcapHeader {
        ts_resolution: TsResolution::NanoSecond,
        datalink: DataLink::LINUX_SLL,
        ..PcapHeader::default()
    };
    let mut sll = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (frame, ns, _) in &packets {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(*ns),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(frame),
            options: vec![],
        };
        ng.write_block(&epb.into_block()).unwrap();
        let mut cooked = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        cooked.extend_from_slice(&frame[12..]);
        sll.write_packet(&PcapPacket::new(
            Duration::from_nanos(*ns),
            cooked.len() as u32,
            &cooked,
        ))
        .unwrap();
    }
    for (name, bytes) in [
        ("k.pcap", pcap.into_writer()),
        ("k.pcapng", ng.into_inner()),
        ("sll.pcap", sll.into_writer()),
    ] {
        let cap = dir.path().join(name);
        std::fs::write(&cap, bytes).unwrap();
        let csv = dir.path().join(format!("{name}.csv"));
        let report = ok(&[
            "features",
            "--pcap",
            cap.to_str().unwrap(),
            "--label",
            "3",
            "--out",
            csv.to_str().unwrap(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
        assert_eq!(v["frames"], packets.len(), "{name}");
        assert_eq!(v["rows"], want.len(), "{name}");
        let rows = csv_rows(&csv);
        assert_eq!(rows.len(), want.len(), "{name}");
        for (i, (row, kernel)) in rows.iter().zip(&want).enumerate() {
            let kernel: Vec<i64> = kernel.iter().map(|&f| i64::from(f)).collect();
            assert_eq!(row[..NUM_FEATURES], kernel[..], "{name}: row {i}");
            assert_eq!(row[NUM_FEATURES], 3);
        }
    }
}

#[test]
fn bad_captures_and_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.csv");
    let out = out.to_str().unwrap();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    let frame = [0u8; 60];
    for _ in 0..3 {
        w.write_packet(&PcapPacket::new(Duration::ZERO, 60, &frame))
            .unwrap();
    }
    let mut bytes = w.into_writer();
    bytes.truncate(bytes.len() - 10);
    let cap = dir.path().join("cut.pcap");
    std::fs::write(&cap, bytes).unwrap();
    let cap = cap.to_str().unwrap();
    let e = fails(&["features", "--pcap", cap, "--label", "0", "--out", out]);
    assert!(
        e.contains("cut.pcap: record 3 at byte offset 176: the file ends inside this record"),
        "{e}"
    );
    let e = fails(&["features", "--pcap", cap, "--label", "16", "--out", out]);
    assert!(e.contains("--label 16: classes are 0..=15"), "{e}");
    let e = fails(&[
        "features",
        "--pcap",
        "/nonexistent.pcap",
        "--label",
        "0",
        "--out",
        out,
    ]);
    assert!(e.contains("cannot read /nonexistent.pcap"), "{e}");
    let e = fails(&[
        "capture",
        "--iface",
        "npk-no-such-if",
        "--label",
        "0",
        "--seconds",
        "1",
        "--out",
        out,
    ]);
    assert!(
        e.contains("no network interface named `npk-no-such-if`"),
        "{e}"
    );
    let e = fails(&["gen", "--rate-scale", "100", "--out", out]);
    assert!(e.contains("outside (0, 20000]"), "{e}");
    // A real-tool lab run lasts at least 2 s (the default lab); the synthetic one 1 s.
    let e = fails(&["demo", "--capture", "1"]);
    assert!(e.contains("--capture 1: must be 2..=600 seconds"), "{e}");
    let e = fails(&["demo", "--lab", "synthetic", "--capture", "0"]);
    assert!(e.contains("--capture 0: must be 1..=600 seconds"), "{e}");
}

#[test]
fn live_capture_records_what_the_kernel_saw() {
    let lab = NetLab::create(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("live.csv");
    let child = Command::new(NPK)
        .args(["capture", "--iface", &lab.host_if, "--label", "2"])
        .args(["--seconds", "5", "--json", "--out"])
        .arg(&csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pins = Path::new("/sys/fs/bpf/npk").join(&lab.host_if);
    let start = Instant::now();
    // The program pin comes after the links (the directory before them).
    while !pins.join("prog").exists() {
        // Loading the classifier takes seconds on a busy machine; the capture's own clock
        // starts once it is attached.
        assert!(start.elapsed() < Duration::from_secs(30), "never attached");
        std::thread::sleep(Duration::from_millis(20));
    }
    let to = (lab.host_addr, 9);
    lab.in_netns(|| {
        let s = UdpSocket::bind((lab.ns_addrs[0], 0)).unwrap();
        for i in 0..500 {
            s.send_to(&vec![7u8; 10 + i % 100], to).unwrap();
        }
    })
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["samples_lost"], 0);
    let rows = csv_rows(&csv);
    assert_eq!(v["rows"], rows.len());
    let column = |name: &str| FEATURE_NAMES.iter().position(|&n| n == name).unwrap();
    // The lab's namespace sends no other UDP (features hold no ports since schema v5).
    let ours: Vec<&Vec<i64>> = rows.iter().filter(|r| r[1] == 17).collect();
    assert_eq!(ours.len(), 500, "every datagram, once");
    for (i, r) in ours.iter().enumerate() {
        // protocol, IP length (none for UDP, schema v4), flow packets, label
        assert_eq!(r[1], 17);
        assert_eq!(r[2], 0);
        assert_eq!(
            r[column("flow_packets_log2")],
            i64::from(npk_common::host::log2_q3(i as u64 + 1)),
            "one flow, counted in order"
        );
        assert_eq!(r[NUM_FEATURES], 2);
    }
    // One host, one flow, one port: its packet rate climbs, its new-flow rate does not.
    let (first, last) = (ours[0], ours[499]);
    assert!(last[column("host_pkt_rate")] > first[column("host_pkt_rate")] + 40);
    assert!(last[column("host_new_flow_rate")] <= first[column("host_new_flow_rate")]);
    assert_eq!(last[column("host_dst_ports")], 1);
    // Port 9 is closed: the host answers with ICMP errors (rate-limited), which the egress
    // program counts for the sending host but not for the UDP flow, which no reply answers.
    let no_replies = i64::from(npk_common::host::NO_REPLIES);
    assert!(
        ours.iter()
            .all(|r| r[column("flow_reply_balance")] == no_replies)
    );
    assert_eq!(first[column("host_reply_balance")], no_replies);
    assert!(
        last[column("host_reply_balance")] > no_replies,
        "the ICMP errors were not counted"
    );
    assert!(!pins.exists(), "capture left its pins");
}

#[test]
fn generated_traffic_trains_a_model_the_classifier_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("gen.csv");
    let report = ok(&[
        "gen",
        "--seconds",
        "2",
        "--seed",
        "5",
        "--json",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let class_rows: Vec<u64> = v["class_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(class_rows.len(), 5);
    assert!(class_rows.iter().all(|&n| n > 50), "{class_rows:?}");
    for s in v["scenarios"].as_array().unwrap() {
        assert!(s["events"].as_u64().unwrap() > 0, "{s}");
    }
    let data = Dataset::load_csv(&csv).unwrap();
    assert_eq!(data.num_classes, 5);
    assert_eq!(data.len() as u64, v["rows"].as_u64().unwrap());

    let model = dir.path().join("m.npk");
    ok(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--epochs",
        "3",
        "--batch",
        "64",
        "--out",
        model.to_str().unwrap(),
    ]);
    let file = ModelFile::load(&model).unwrap();
    assert_eq!(file.schema(), FeatureSchema::PacketV6);
    // Integer means: the kernel's input offsets are exactly the standardization.
    assert!(file.standardizer.mean.iter().all(|m| m.fract() == 0.0));
    let mut c = Classifier::load(ProgramKind::Xdp).unwrap();
    c.push(&file.kernel_model().unwrap()).unwrap();
    // Models of the previous feature schemas are refused by name, and change nothing.
    for (old, version) in [
        (FeatureSchema::PacketV1, 1),
        (FeatureSchema::PacketV2, 2),
        (FeatureSchema::PacketV3, 3),
        (FeatureSchema::PacketV4, 4),
    ] {
        let mut model = file.kernel_model().unwrap();
        model.header.feature_schema = old as u32;
        let err = format!("{:#}", c.push(&model).unwrap_err());
        assert!(
            err.contains(&format!(
                "model uses packet feature schema v{version}, this npk computes v6"
            )),
            "{err}"
        );
    }
    assert_eq!(c.active_model().unwrap().unwrap().header.model_version, 1);

    // The ingress features alone: a v5 model, which the v6 classifier runs (its first 26
    // features), and which `npk eval` scores on the same CSV.
    let ingress = dir.path().join("ingress.npk");
    ok(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "64",
        "--ingress-only",
        "--out",
        ingress.to_str().unwrap(),
    ]);
    let v5 = ModelFile::load(&ingress).unwrap();
    assert_eq!(v5.schema(), FeatureSchema::PacketV5);
    assert_eq!(v5.feature_names.len(), 26);
    let mut c = Classifier::load(ProgramKind::Xdp).unwrap();
    // A packet model must read as many features as its schema has: 26 inputs called v6 are
    // refused.
    let mut mislabelled = v5.kernel_model().unwrap();
    mislabelled.header.feature_schema = FeatureSchema::PacketV6 as u32;
    let err = format!("{:#}", c.push(&mislabelled).unwrap_err());
    assert!(
        err.contains("a model of packet features v6 reads 28 features, this one 26"),
        "{err}"
    );
    c.push(&v5.kernel_model().unwrap()).unwrap();
    ok(&[
        "eval",
        "--model",
        ingress.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
    ]);
}
