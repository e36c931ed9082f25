//! Integration tests against the real kernel (root): TEST_RUN equivalence, real traffic over a
//! veth pair in a network namespace in native, skb and TC modes, hot swap under traffic, detach.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::maps::RingBuf;
use npk::{
    fixtures::random_packet_model,
    kernel::{
        ProgramKind,
        attach::{self, AttachMode, IfaceName, pin_dir},
        probe::kernel,
        verify::verify,
    },
    netlab::NetLab,
};
use npk_common::{
    infer::{PlainLoop, Scratch, infer},
    maps::{Action, Config, FLAG_SAMPLE_ALL, MAP_SAMPLES, Sample},
    model::{MAX_CLASSES, Model},
    packet::NUM_FEATURES,
};

/// Sends `count` UDP datagrams from the lab's namespace to its host end, in the background.
fn send_udp(lab: &NetLab, count: u32) -> Child {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({count}):\n  s.sendto(b'x'*(20+i%200),('{}',9000+i%50))\n",
        lab.host_addr
    );
    Command::new("ip")
        .args(["netns", "exec", &lab.netns, "python3", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sender")
}

fn iface(lab: &NetLab) -> IfaceName {
    lab.host_if.parse().unwrap()
}

fn config(flags: u32, drop_class: Option<usize>) -> Config {
    let mut class_action = [Action::Pass as u8; MAX_CLASSES];
    if let Some(c) = drop_class {
        class_action[c] = Action::Drop as u8;
    }
    Config {
        flags,
        class_action,
        ..Config::default()
    }
}

fn reference_class(model: &Model, features: &[i32; NUM_FEATURES]) -> u32 {
    let mut scratch = Box::new(Scratch::new());
    scratch.features[..NUM_FEATURES].copy_from_slice(features);
    infer(model, &mut scratch, &mut PlainLoop)
}

#[test]
fn test_run_matches_reference_bit_for_bit() {
    for (hidden, kind) in [
        (vec![16, 16], ProgramKind::Xdp),
        (vec![64, 64], ProgramKind::Xdp),
        (vec![128, 128, 128], ProgramKind::Xdp),
        (vec![32], ProgramKind::Tc),
    ] {
        let model = random_packet_model(&hidden, 4, 7).unwrap();
        let r = verify(&model, kind, 20_000, 7, |_| {}).unwrap();
        assert_eq!(
            (r.mismatches, r.errors),
            (0, 0),
            "{hidden:?} {kind:?}: {:?}",
            r.first_problems
        );
        assert!(r.valid > 15_000 && r.rejected > 1_000, "{r:?}");
    }
}

#[test]
fn real_traffic_is_counted_per_class_in_every_mode() {
    for mode in [AttachMode::Native, AttachMode::Skb, AttachMode::Tc] {
        let lab = NetLab::create(1).unwrap();
        let model = random_packet_model(&[16, 16], 3, 11).unwrap();
        let attached = attach::attach(&iface(&lab), mode, &model, &config(0, None), false);
        if mode == AttachMode::Tc && !kernel().tcx {
            // Before 6.6: refused up front, naming the kernel and the modes that work.
            let err = attached
                .err()
                .expect("TC attach without TCX must be refused");
            let text = err.to_string();
            assert!(
                text.contains(&kernel().release)
                    && text.contains("TC needs TCX (Linux >= 6.6); use --mode skb/native"),
                "{text}"
            );
            assert!(!pin_dir(&iface(&lab)).exists(), "pins left behind");
            continue;
        }
        let a = attached.unwrap();
        let mut sender = send_udp(&lab, 2000);
        assert!(sender.wait().unwrap().success());
        std::thread::sleep(Duration::from_millis(200));
        let c = a.classifier.counters().unwrap();
        let classified: u64 = c.class_packets.iter().sum();
        assert!(
            classified >= 2000,
            "{mode:?}: only {classified} packets classified ({c:?})"
        );
        assert_eq!(
            c.inferences, classified,
            "{mode:?}: every packet inferred with reinfer 1"
        );
        drop(a);
        assert!(
            !pin_dir(&iface(&lab)).exists(),
            "{mode:?}: pins left behind"
        );
    }
}

#[test]
fn a_dropping_class_drops_real_packets() {
    let lab = NetLab::create(1).unwrap();
    let model = random_packet_model(&[16], 2, 5).unwrap();
    let a = attach::attach(
        &iface(&lab),
        AttachMode::Skb,
        &model,
        &config(0, Some(0)),
        false,
    )
    .unwrap();
    let mut sender = send_udp(&lab, 1000);
    assert!(sender.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    let c = a.classifier.counters().unwrap();
    assert_eq!(c.dropped, c.class_packets[0], "{c:?}");
}

#[test]
fn hot_swap_under_traffic_never_mixes_models() {
    let lab = NetLab::create(1).unwrap();
    let models = [
        random_packet_model(&[32, 32], 4, 100).unwrap(),
        random_packet_model(&[32, 32], 4, 200).unwrap(),
    ];
    let mut a = attach::attach(
        &iface(&lab),
        AttachMode::Skb,
        &models[0],
        &config(FLAG_SAMPLE_ALL, None),
        false,
    )
    .unwrap();
    let mut ring = RingBuf::try_from(a.classifier.ebpf.take_map(MAP_SAMPLES).unwrap()).unwrap();
    let mut sender = send_udp(&lab, 20_000);
    let (mut checked, mut pushes) = (0u64, 0u32);
    let mut versions_seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut check = |ring: &mut RingBuf<_>, checked: &mut u64| {
        while let Some(item) = ring.next() {
            let s: Sample = bytemuck::pod_read_unaligned(&item[..size_of::<Sample>()]);
            // Version 1 is models[0] (attach), then pushes alternate models[1], models[0], ...
            let model = &models[((s.model_version + 1) % 2) as usize];
            assert_eq!(s.class, reference_class(model, &s.features), "sample {s:?}");
            versions_seen.insert(s.model_version);
            *checked += 1;
        }
    };
    while sender.try_wait().unwrap().is_none() && Instant::now() < deadline {
        pushes += 1;
        a.classifier.push(&models[(pushes % 2) as usize]).unwrap();
        check(&mut ring, &mut checked);
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = sender.kill();
    std::thread::sleep(Duration::from_millis(100));
    check(&mut ring, &mut checked);
    assert!(
        pushes > 20 && checked > 5_000,
        "pushes {pushes}, checked {checked}"
    );
    assert!(
        versions_seen.len() > 5,
        "traffic saw only {} model versions",
        versions_seen.len()
    );
}

#[test]
fn pinned_attach_survives_its_handle_and_detach_removes_everything() {
    let lab = NetLab::create(1).unwrap();
    let model = random_packet_model(&[16], 2, 3).unwrap();
    let bpf_stats = || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let stats_before = bpf_stats();
    drop(
        attach::attach(
            &iface(&lab),
            AttachMode::Skb,
            &model,
            &config(0, None),
            true,
        )
        .unwrap(),
    );
    let dir = pin_dir(&iface(&lab));
    assert!(dir.join("link").exists());
    // The run-time accounting stays on for `npk stats` after the attaching process is gone.
    assert_eq!(bpf_stats().trim(), "1");
    let mut sender = send_udp(&lab, 300);
    assert!(sender.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    let maps = npk::kernel::ControlMaps::from_pins(&dir).unwrap();
    assert!(maps.counters().unwrap().class_packets.iter().sum::<u64>() >= 300);
    // A second attach on the same interface is refused before anything changes.
    let err = attach::attach(
        &iface(&lab),
        AttachMode::Skb,
        &model,
        &config(0, None),
        true,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("already attached"), "{err}");
    attach::detach(&iface(&lab)).unwrap();
    assert!(!dir.exists());
    assert_eq!(
        bpf_stats(),
        stats_before,
        "detach restores kernel.bpf_stats_enabled"
    );
    let xdp = Command::new("ip")
        .args(["link", "show", &lab.host_if])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&xdp.stdout).contains("xdp"),
        "program still attached"
    );
    assert!(
        attach::detach(&iface(&lab)).is_err(),
        "second detach must say nothing is attached"
    );
    assert!(!Path::new("/sys/fs/bpf/npk").join(&lab.host_if).exists());
}
