//! The kernel programs' log (aya-log), against the real kernel (root): a foreground `npk
//! attach` run with RUST_LOG=info writes the classifier's rare events on stderr, a model
//! version seen for the first time after `npk push` and a configuration change written to the
//! live attachment's config map.
//!
//! The binary is the one `cargo test --release` builds next to this test
//! (target/release/npk).

#[allow(dead_code)] // Running: these tests read a foreground attach's stderr (Foreground)
mod common;

use std::{
    io::{BufRead, BufReader},
    net::UdpSocket,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{npk, trained_model};
use npk::{
    kernel::{ControlMaps, attach::pin_dir},
    netlab::NetLab,
};
use npk_common::{
    maps::{Action, Config},
    model::MAX_CLASSES,
};

/// A foreground `npk attach` with RUST_LOG=info whose stderr lines arrive on a channel.
struct Foreground {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Foreground {
    fn attach(iface: &str, model: &str) -> Self {
        let mut child = Command::new(npk())
            .args([
                "attach", "--iface", iface, "--model", model, "--mode", "skb",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut fg = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        fg.wait_for(None, "attached to");
        fg
    }

    /// Waits up to 30 s for a stderr line containing `text`, sending a burst of UDP from the
    /// lab's namespace (when given) every 200 ms meanwhile: the programs log what a packet
    /// shows them, so they need traffic.
    #[track_caller]
    fn wait_for(&mut self, lab: Option<&NetLab>, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(lab) = lab {
                send(lab);
            }
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let found = line.contains(text);
                self.seen.push(line.clone());
                if found {
                    return line;
                }
            }
        }
        panic!("no {text:?} from npk; stderr: {:?}", self.seen);
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid; SIGINT detaches.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
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
    fg.wait_for(Some(&lab), "model version 1 first seen");
    let out = Command::new(npk())
        .args(["push", "--iface", iface, "--model", &model])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "npk push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = fg.wait_for(Some(&lab), "model version 2 first seen");
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
        Some(&lab),
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
    let line = fg.wait_for(Some(&lab), "reinfer every 4 packets");
    let actions = format!("{:02x}{:02x}", Action::Pass as u8, Action::Count as u8);
    assert!(line.contains(&format!("class actions {actions}")), "{line}");
}
