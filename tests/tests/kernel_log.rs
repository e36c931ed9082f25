//! The kernel programs' log (aya-log), against the real kernel (root): a foreground `npk
//! attach` run with RUST_LOG=info writes the classifier's rare events on stderr, a model
//! version seen for the first time after `npk push` and a configuration change written to the
//! live attachment's config map.
//!
//! The binary is the one `cargo test --release` builds next to this test
//! (target/release/npk).

#[allow(dead_code)] // Running::start and exit: the other tests'
mod common;

use std::{net::UdpSocket, process::Command, time::Duration};

use common::{Running, npk, trained_model};
use npk::{
    kernel::{ControlMaps, attach::pin_dir},
    netlab::NetLab,
};
use npk_common::{
    maps::{Action, Config},
    model::MAX_CLASSES,
};

/// A foreground `npk attach` with RUST_LOG=info, detached (SIGINT) when dropped.
struct Foreground(Running);

impl Foreground {
    fn attach(iface: &str, model: &str) -> Self {
        let mut running = Running::start_with_env(
            &[
                "attach", "--iface", iface, "--model", model, "--mode", "skb",
            ],
            &[("RUST_LOG", "info")],
        );
        running.wait_for("attached to");
        Self(running)
    }

    /// Waits up to 30 s for a line containing `text`, sending a burst of UDP from the lab's
    /// namespace every 200 ms meanwhile: the programs log what a packet shows them, so they
    /// need traffic.
    #[track_caller]
    fn wait_for(&mut self, lab: &NetLab, text: &str) -> String {
        self.0
            .wait_for_while(text, Duration::from_secs(30), || send(lab))
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        self.0.signal(libc::SIGINT);
        let _ = self.0.child.wait();
    }
}

/// Ten UDP datagrams from the namespace to the host side, through the classifier.
fn send(lab: &NetLab) {
    let (from, to) = (lab.ns_addrs[0], lab.host_addr);
    lab.in_netns(|| {
        let socket = UdpSocket::bind((from, 0)).unwrap();
        for _ in 0..10 {
            let _ = socket.send_to(b"npk kernel log test", (to, 9));
        }
    })
    .unwrap();
}

#[test]
fn a_pushed_model_version_is_logged_when_first_seen() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 2);
    let lab = NetLab::create(1).unwrap();
    let iface = lab.host_if.as_str();
    let mut fg = Foreground::attach(iface, &model);
    fg.wait_for(&lab, "model version 1 first seen");
    let out = Command::new(npk())
        .args(["push", "--iface", iface, "--model", &model])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "npk push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = fg.wait_for(&lab, "model version 2 first seen");
    assert!(
        line.contains("npk::kernel"),
        "the target names the kernel: {line}"
    );
}

#[test]
fn a_config_change_is_logged_when_seen() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 2);
    let lab = NetLab::create(1).unwrap();
    let iface = lab.host_if.as_str();
    let mut fg = Foreground::attach(iface, &model);
    fg.wait_for(
        &lab,
        "config change seen on this CPU: reinfer every 1 packets",
    );
    // What a later configuration write does (the pinned config map of the live attachment):
    // reinfer every 4th packet, class 1 counted.
    let mut class_action = [Action::Pass as u8; MAX_CLASSES];
    class_action[1] = Action::Count as u8;
    let mut maps = ControlMaps::from_pins(&pin_dir(&iface.parse().unwrap())).unwrap();
    maps.set_config(&Config {
        reinfer_every: 4,
        class_action,
        ..Config::DEFAULT
    })
    .unwrap();
    let line = fg.wait_for(&lab, "reinfer every 4 packets");
    let actions = format!("{:02x}{:02x}", Action::Pass as u8, Action::Count as u8);
    assert!(line.contains(&format!("class actions {actions}")), "{line}");
}
