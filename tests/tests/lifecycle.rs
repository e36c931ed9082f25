//! The attachment lifecycle through the release `npk` binary, against the real kernel (root):
//! interface names checked before any bpffs path is built, detach removing only npk's own
//! pins, killed, hung-up and orphaned attachments, TC attached twice, push compatibility (and
//! width, to the bounded-loop classifier), `npk cleanup`, and attach/push/stats/detach with
//! capabilities instead of root.
//!
//! The binary is the one `cargo test --release` builds next to this test
//! (target/release/npk).

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use common::{Running, npk, trained_model, trained_model_as};
use npk::{kernel::attach::pin_dir, netlab::NetLab};
use npk_common::maps::{MAP_MODELS, MAP_STATS};

fn run(args: &[&str]) -> Output {
    Command::new(npk()).args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The version a successful `npk push` announces ("model version N active").
#[track_caller]
fn pushed_version(out: &Output) -> u32 {
    assert!(out.status.success(), "{}", stderr(out));
    let text = stdout(out);
    text.split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text:?}"))
}

/// `npk` under strace with every bpf(2) call delayed by `delay_us` (its arguments to add).
fn slowed_npk(delay_us: u32) -> Command {
    let mut command = Command::new("strace");
    command
        .args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("inject=bpf:delay_enter={delay_us}"))
        .arg(npk());
    command
}

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "npk {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// `npk attach --pin` of `model` to `iface` in `mode` (skb, native, tc), then `extra`; must succeed.
#[track_caller]
fn attach_pinned(iface: &str, model: &str, mode: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "attach", "--iface", iface, "--model", model, "--mode", mode, "--pin",
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

#[track_caller]
fn fails(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        !out.status.success(),
        "npk {args:?} should have failed: {}",
        stdout(&out)
    );
    out
}

/// Packet-feature models with 2 and 3 classes and a tabular (iris) one, trained by `npk
/// train` into a directory everyone may read (the capability test runs as another uid).
struct Models {
    dir: tempfile::TempDir,
    two: String,
    three: String,
}

impl Models {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let model = |classes: u32| readable(trained_model(dir.path(), classes));
        let (two, three) = (model(2), model(3));
        Self { dir, two, three }
    }

    /// A two-class packet model with one 64-wide hidden layer.
    fn wide(&self) -> String {
        readable(trained_model_as(self.dir.path(), 2, 64, "wide.npk"))
    }

    fn tabular(&self) -> String {
        let iris = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/iris.csv");
        let out = self.dir.path().join("iris.npk");
        let out_str = out.to_str().unwrap();
        ok(&[
            "train",
            "--data",
            iris.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            out_str,
        ]);
        out_str.to_string()
    }
}

/// `path`, readable by everyone (the capability test runs as another uid).
fn readable(path: String) -> String {
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// A foreground npk (attach, capture, gen) started once it printed its ready line.
struct Foreground(Running);

impl Foreground {
    fn start(args: &[&str], ready: &str) -> Self {
        let mut running = Running::start(args);
        running.wait_for(ready);
        Self(running)
    }

    fn attach(iface: &str, model: &str) -> Self {
        Self::start(
            &[
                "attach", "--iface", iface, "--model", model, "--mode", "skb",
            ],
            "attached to",
        )
    }

    fn signal(&self, signal: libc::c_int) {
        self.0.signal(signal);
    }

    /// Waits for the exit (at most `within`), returns whether it succeeded and all output.
    #[track_caller]
    fn exit(self, within: Duration) -> (bool, String) {
        let (success, lines) = self.0.exit(within);
        (success, lines.join("\n"))
    }
}

fn lab() -> NetLab {
    NetLab::create(1).unwrap()
}

fn has_xdp(iface: &str) -> bool {
    let out = Command::new("ip")
        .args(["link", "show", "dev", iface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

fn pins(iface: &str) -> PathBuf {
    pin_dir(&iface.parse().unwrap())
}

#[test]
fn names_that_are_not_interfaces_are_refused_before_any_path_is_built() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    // Someone's attachment, which a bad name must not reach.
    attach_pinned(iface, &models.two, "skb", &[]);
    let sixteen = "abcdefghijklmnop";
    for name in [
        "", ".", "..", "../npk", "a/b", "x y", "tab\t", "eth0:1", sixteen,
    ] {
        for args in [
            vec!["detach", "--iface", name],
            vec!["stats", "--iface", name],
            vec!["push", "--iface", name, "--model", &models.two],
            vec!["attach", "--iface", name, "--model", &models.two],
            vec![
                "capture",
                "--iface",
                name,
                "--label",
                "0",
                "--seconds",
                "1",
                "--out",
                "/nonexistent/x.csv",
            ],
            vec!["serve", "--kernel", name, "--model", &models.two],
        ] {
            let out = run(&args);
            let err = stderr(&out);
            // 2: clap refused the value, before the command ran.
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("interface name") || err.contains("not an interface"),
                "{args:?}: {err}"
            );
        }
    }
    let dir = pins(iface);
    for pin in ["prog", "link", "owner", MAP_MODELS, MAP_STATS] {
        assert!(
            dir.join(pin).symlink_metadata().is_ok(),
            "{pin} of the attachment is gone"
        );
    }
    ok(&["detach", "--iface", iface]);
}

#[test]
fn detach_removes_npks_pins_by_name_and_keeps_anything_else() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    attach_pinned(iface, &models.two, "skb", &[]);
    let dir = pins(iface);
    // bpffs holds pins, directories and symlinks: a symlink stands for someone else's file.
    std::os::unix::fs::symlink("keep-me", dir.join("precious")).unwrap();
    let out = ok(&["detach", "--iface", iface]);
    assert!(stderr(&out).contains("precious"), "{}", stderr(&out));
    assert!(!has_xdp(iface), "still attached");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["precious"]);
    std::fs::remove_file(dir.join("precious")).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    // Detaching again (a service stopped after a crash or a manual detach) succeeds and says
    // there was nothing to detach.
    let again = ok(&["detach", "--iface", iface]);
    assert!(
        stdout(&again).contains("nothing to detach"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn a_killed_attach_is_reported_by_push_and_stats_and_replaced_by_the_next_attach() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let fg = Foreground::attach(iface, &models.two);
    fg.signal(libc::SIGKILL);
    let (_, _) = fg.exit(Duration::from_secs(10));
    let dir = pins(iface);
    assert!(dir.join("prog").exists(), "kill -9 cannot clean up");
    assert!(!has_xdp(iface), "the link died with the process");

    for args in [
        vec!["push", "--iface", iface, "--model", &models.two],
        vec!["stats", "--iface", iface],
    ] {
        let err = stderr(&fails(&args));
        assert!(
            err.contains("stale") && err.contains(&format!("npk detach --iface {iface}")),
            "{args:?}: {err}"
        );
    }
    let out = attach_pinned(iface, &models.two, "skb", &[]);
    assert!(
        stderr(&out).contains("removed the stale pins"),
        "{}",
        stderr(&out)
    );
    assert!(has_xdp(iface));
    ok(&["push", "--iface", iface, "--model", &models.two]);
    ok(&["stats", "--iface", iface]);
    ok(&["detach", "--iface", iface]);
    assert!(!dir.exists());
}

#[test]
fn sighup_detaches_a_foreground_attach_like_sigint() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let fg = Foreground::attach(iface, &models.two);
    assert!(has_xdp(iface));
    fg.signal(libc::SIGHUP);
    let (success, err) = fg.exit(Duration::from_secs(10));
    assert!(success, "{err}");
    assert!(err.contains("detached from"), "{err}");
    assert!(!pins(iface).exists(), "pins left after SIGHUP");
    assert!(!has_xdp(iface));
}

#[test]
fn sighup_ends_a_capture_with_its_pins_removed() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let csv = models.dir.path().join("capture.csv");
    let capture = Foreground::start(
        &[
            "capture",
            "--iface",
            iface,
            "--label",
            "0",
            "--seconds",
            "60",
            "--out",
            csv.to_str().unwrap(),
        ],
        "capturing on",
    );
    capture.signal(libc::SIGHUP);
    let (success, err) = capture.exit(Duration::from_secs(10));
    assert!(success, "{err}");
    assert!(!pins(iface).exists(), "pins left after SIGHUP");
}

#[test]
fn an_interface_deleted_under_a_foreground_attach_is_noticed() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let fg = Foreground::attach(iface, &models.two);
    npk::netlab::ip(&["link", "del", iface]).unwrap();
    let (success, err) = fg.exit(Duration::from_secs(10));
    assert!(!success, "{err}");
    assert!(err.contains("no longer exists"), "{err}");
    assert!(!pins(iface).exists(), "pins left");
}

#[test]
fn tc_mode_attaches_again_after_detach_and_leaves_qdiscs_alone() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let qdiscs = || {
        let out = Command::new("tc")
            .args(["qdisc", "show", "dev", iface])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for _ in 0..2 {
        attach_pinned(iface, &models.two, "tc", &[]);
        ok(&["detach", "--iface", iface]);
    }
    assert!(
        !qdiscs().contains("clsact"),
        "npk left a qdisc: {}",
        qdiscs()
    );
    // Someone's clsact qdisc is used as it is and kept.
    Command::new("tc")
        .args(["qdisc", "add", "dev", iface, "clsact"])
        .status()
        .unwrap();
    attach_pinned(iface, &models.two, "tc", &[]);
    ok(&["detach", "--iface", iface]);
    assert!(qdiscs().contains("clsact"), "{}", qdiscs());
}

#[test]
fn push_refuses_classes_without_an_action_and_other_features() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    attach_pinned(iface, &models.two, "skb", &["--action", "1=drop"]);
    let push = |model: &str, allow: bool| {
        let mut args = vec!["push", "--iface", iface, "--model", model];
        if allow {
            args.push("--allow-unmapped-classes");
        }
        run(&args)
    };
    let out = push(&models.three, false);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("class 2 would have no action"),
        "{}",
        stderr(&out)
    );
    let out = push(&models.tabular(), true);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tabular (CSV columns) with 4 inputs"),
        "{}",
        stderr(&out)
    );
    let out = push(&models.three, true);
    assert!(
        stdout(&out).contains("model version 2 active"),
        "{}",
        stderr(&out)
    );
    ok(&["detach", "--iface", iface]);
}

/// The bounded-loop classifier (what kernels without bpf_loop load; NPK_LOOPS=bounded picks it
/// here): `npk push` to its pinned attachment takes a model that fits its width and refuses a
/// wider one, naming the limit (the program would answer "no model" for every packet).
#[test]
fn push_to_a_bounded_classifier_takes_models_up_to_its_width() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let out = Command::new(npk())
        .args(["attach", "--iface", iface, "--model", &models.two])
        .args(["--mode", "skb", "--pin"])
        .env("NPK_LOOPS", "bounded")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ok(&["push", "--iface", iface, "--model", &models.two]);
    assert!(
        stdout(&out).contains("model version 2 active"),
        "{}",
        stdout(&out)
    );
    let out = fails(&["push", "--iface", iface, "--model", &models.wide()]);
    assert!(
        stderr(&out).contains("the model is 64 wide")
            && stderr(&out).contains("takes models up to 32 wide"),
        "{}",
        stderr(&out)
    );
    ok(&["detach", "--iface", iface]);
}

#[test]
fn cleanup_removes_what_a_killed_gen_left_and_keeps_the_rest() {
    let models = Models::new();
    let csv = models.dir.path().join("gen.csv");
    let generator = Foreground::start(
        &["gen", "--seconds", "60", "--out", csv.to_str().unwrap()],
        "sending from namespace",
    );
    let pid = generator.0.child.id();
    let netns = format!("npkd-{pid}-0");
    let veth = format!("nd{pid:x}0h");
    generator.signal(libc::SIGKILL);
    let _ = generator.exit(Duration::from_secs(10));
    let netns_path = Path::new("/run/netns").join(&netns);
    assert!(pins(&veth).exists(), "kill -9 cannot clean up");

    // What is alive stays: this process's lab and an attachment on it.
    let lab = lab();
    let iface = lab.host_if.as_str();
    attach_pinned(iface, &models.two, "skb", &[]);

    // Any NetLab::create (tests run in parallel) also deletes orphaned lab namespaces; one
    // that is there before and after the dry run must be listed.
    let netns_before = netns_path.exists();
    let dry = stdout(&ok(&["cleanup", "--dry-run"]));
    if netns_before && netns_path.exists() {
        assert!(
            dry.contains(&format!("would remove namespace {netns}")),
            "{dry}"
        );
    }
    assert!(
        dry.contains(&format!("would remove {}", pins(&veth).display())),
        "{dry}"
    );
    assert!(
        dry.contains(&format!("kept namespace {}", lab.netns)),
        "{dry}"
    );
    assert!(
        dry.contains(&format!("kept {}", pins(iface).display())),
        "{dry}"
    );
    assert!(pins(&veth).exists(), "--dry-run removed something");
    let dry: serde_json::Value =
        serde_json::from_slice(&ok(&["cleanup", "--dry-run", "--json"]).stdout).unwrap();
    let named = |list: &str, name: String| {
        dry[list]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == name.as_str())
    };
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(named("removed", pins(&veth).display().to_string()), "{dry}");
    assert!(named("kept", pins(iface).display().to_string()), "{dry}");
    assert!(named("kept", lab.netns.clone()), "{dry}");
    assert!(pins(&veth).exists(), "--dry-run --json removed something");

    let done = stdout(&ok(&["cleanup"]));
    assert!(
        done.contains(&format!("removed {}", pins(&veth).display())),
        "{done}"
    );
    assert!(!netns_path.exists(), "namespace left");
    assert!(
        !Path::new("/sys/class/net").join(&veth).exists(),
        "veth left"
    );
    assert!(!pins(&veth).exists(), "pins left");
    assert!(Path::new("/run/netns").join(&lab.netns).exists());
    assert!(pins(iface).join("link").exists() && has_xdp(iface));
    ok(&["detach", "--iface", iface]);
}

/// attach, push, stats and detach as uid 65534 with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN
/// only (ambient capabilities through setpriv), in a private mount namespace whose own bpffs
/// at /sys/fs/bpf belongs to that uid (how an admin hands a user a pin directory; the host's
/// bpffs is not touched). Root's pins in it are refused with what is needed.
#[test]
fn attach_push_stats_detach_work_with_capabilities_instead_of_root() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let npk = npk();
    let npk = npk.to_str().unwrap();
    let model = &models.two;
    let user = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let caps = "--inh-caps=-all,+bpf,+perfmon,+net_admin \
                --ambient-caps=-all,+bpf,+perfmon,+net_admin";
    let script = format!(
        "set -u
         mount -t bpf -o uid=65534,gid=65534,mode=0700 bpf /sys/fs/bpf || exit 90
         step() {{ name=$1; shift; \"$@\" > /tmp/npk-lc-$$ 2>&1; rc=$?; \
                   echo \"$name rc=$rc $(tr '\\n' ' ' < /tmp/npk-lc-$$)\"; rm -f /tmp/npk-lc-$$; }}
         step nocaps {user} {npk} attach --iface {iface} --model {model} --mode skb --pin
         for mode in skb tc; do
           step attach-$mode {user} {caps} {npk} attach --iface {iface} --model {model} --mode $mode --pin
           step push-$mode {user} {caps} {npk} push --iface {iface} --model {model}
           step stats-$mode {user} {caps} {npk} stats --iface {iface} --json
           step detach-$mode {user} {caps} {npk} detach --iface {iface}
         done
         {npk} attach --iface {iface} --model {model} --mode skb 2> /tmp/npk-lc-root-$$ &
         root=$!
         for i in $(seq 300); do grep -q attached /tmp/npk-lc-root-$$ && break; sleep 0.2; done
         step push-root-pins {user} {caps} {npk} push --iface {iface} --model {model}
         kill -INT $root; wait $root; rm -f /tmp/npk-lc-root-$$"
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let report = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{report}{}", stderr(&out));
    let step = |name: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {report}"))
            .to_string()
    };
    let nocaps = step("nocaps");
    assert!(
        nocaps.starts_with("rc=1") && nocaps.contains("lacks CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"),
        "{nocaps}"
    );
    for mode in ["skb", "tc"] {
        for name in ["attach", "push", "stats", "detach"] {
            let line = step(&format!("{name}-{mode}"));
            assert!(
                line.starts_with("rc=0"),
                "{name} ({mode}) as uid 65534: {line}"
            );
        }
    }
    let denied = step("push-root-pins");
    assert!(
        denied.starts_with("rc=1")
            && denied.contains("permission denied")
            && denied.contains("belong to uid 0")
            && !denied.contains("BPF_OBJ_GET"),
        "{denied}"
    );
}

/// Two `npk push` to one attachment at once, one slowed at every bpf(2) call (strace's delay
/// injection, so that its read of the active version and its writes straddle the other's
/// pushes): pushes take turns, every version is announced once, and versions rise by one per
/// push. Without the lock both read the same version and write the same slot.
#[test]
fn concurrent_pushes_take_turns_and_announce_every_version_once() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    attach_pinned(iface, &models.two, "skb", &["--action", "1=drop"]);
    let push_args = ["push", "--iface", iface, "--model", models.two.as_str()];
    let slow_done = std::sync::atomic::AtomicBool::new(false);
    let (slow, fast) = std::thread::scope(|s| {
        let slow = s.spawn(|| {
            let versions = (0..3)
                .map(|_| pushed_version(&slowed_npk(40_000).args(push_args).output().unwrap()))
                .collect::<Vec<_>>();
            slow_done.store(true, std::sync::atomic::Ordering::SeqCst);
            versions
        });
        // Pushes all the time the slow ones run.
        let fast = s.spawn(|| {
            let mut versions = Vec::new();
            while !slow_done.load(std::sync::atomic::Ordering::SeqCst) {
                versions.push(pushed_version(&ok(&push_args)));
                std::thread::sleep(Duration::from_millis(20));
            }
            versions
        });
        (slow.join().unwrap(), fast.join().unwrap())
    });
    let mut all: Vec<u32> = slow.iter().chain(&fast).copied().collect();
    all.sort_unstable();
    // The attach's own push was version 1.
    let expected: Vec<u32> = (2..2 + all.len() as u32).collect();
    assert_eq!(all, expected, "slow {slow:?}, fast {fast:?}");
    ok(&["detach", "--iface", iface]);
}

/// Pushes racing each other (one slowed at every bpf(2) call, as above) while traffic runs
/// through a `--fail-closed` attachment: no packet meets a half-written model (the kernel's
/// read gives up only when a writer keeps the slot busy: `swap_failures`, which get the fail
/// action), and every version is announced once.
#[test]
fn racing_pushes_under_traffic_leave_no_packet_to_the_fail_action() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    attach_pinned(iface, &models.two, "skb", &["--fail-closed"]);
    let sender = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         end=time.time()+4\nwhile time.time()<end:\n  s.sendto(b'x'*40,('{}',9000))\n",
        lab.host_addr
    );
    let mut traffic = Command::new("ip")
        .args(["netns", "exec", &lab.netns, "python3", "-c", &sender])
        .spawn()
        .unwrap();
    let push_args = ["push", "--iface", iface, "--model", models.two.as_str()];
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut versions: Vec<u32> = std::thread::scope(|s| {
        let slow = s.spawn(|| {
            let mut versions = Vec::new();
            while std::time::Instant::now() < deadline {
                let out = slowed_npk(20_000).args(push_args).output().unwrap();
                versions.push(pushed_version(&out));
            }
            versions
        });
        let mut versions = Vec::new();
        while std::time::Instant::now() < deadline {
            versions.push(pushed_version(&ok(&push_args)));
        }
        versions.extend(slow.join().unwrap());
        versions
    });
    assert!(traffic.wait().unwrap().success());
    versions.sort_unstable();
    let expected: Vec<u32> = (2..2 + versions.len() as u32).collect();
    assert_eq!(versions, expected);
    let stats: serde_json::Value =
        serde_json::from_str(stdout(&ok(&["stats", "--iface", iface, "--json"])).trim()).unwrap();
    let counter = |name: &str| {
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
    };
    assert!(counter("inferences") > 1000, "{stats}");
    assert_eq!(counter("swap_failures"), 0, "{stats}");
    ok(&["detach", "--iface", iface]);
}

/// A push that waits for a detach's turn finds nothing attached when its turn comes: it fails
/// saying so, and announces no model. The detach is slowed at every bpf(2) call once it holds
/// the attachment's lock (strace's delay injection), and the push starts only then.
#[test]
fn a_push_queued_behind_a_detach_fails_and_says_why() {
    use std::os::unix::fs::MetadataExt;
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    attach_pinned(iface, &models.two, "skb", &[]);
    let dir_inode = std::fs::metadata(pins(iface)).unwrap().ino();
    let detach = slowed_npk(300_000)
        .args(["detach", "--iface", iface])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // /proc/locks: "N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE START END".
    let locked = || {
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| {
                l.contains("FLOCK")
                    && l.split_whitespace()
                        .nth(5)
                        .and_then(|dev_ino| dev_ino.rsplit(':').next())
                        .is_some_and(|ino| ino == dir_inode.to_string())
            })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !locked() {
        assert!(
            std::time::Instant::now() < deadline,
            "the detach never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let push = run(&["push", "--iface", iface, "--model", models.two.as_str()]);
    let detached = detach.wait_with_output().unwrap();
    assert!(detached.status.success(), "detach: {}", stderr(&detached));
    assert!(
        !push.status.success(),
        "the push succeeded: {}",
        stdout(&push)
    );
    assert!(
        stderr(&push).contains(&format!(
            "npk was detached from {iface} while this command waited"
        )),
        "{}",
        stderr(&push)
    );
    assert!(!stdout(&push).contains("active"), "{}", stdout(&push));
}

/// `--json` on attach (pinned), push and detach: one JSON object each, for scripts; detach
/// twice says the second time that nothing was attached, and succeeds.
#[test]
fn attach_push_detach_speak_json() {
    let models = Models::new();
    let lab = lab();
    let iface = lab.host_if.as_str();
    let json = |out: Output| -> serde_json::Value {
        serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| {
            panic!("{e}: {}", stdout(&out));
        })
    };
    let a = json(attach_pinned(iface, &models.two, "skb", &["--json"]));
    assert_eq!(a["iface"], iface);
    assert_eq!(a["mode"], "skb");
    assert!(
        a["pin_dir"].as_str().is_some_and(|d| d.ends_with(iface)),
        "{a}"
    );
    assert!(a["replaced_stale"].is_null(), "{a}");
    let p = json(ok(&[
        "push",
        "--iface",
        iface,
        "--model",
        &models.two,
        "--json",
    ]));
    assert_eq!(p, serde_json::json!({ "iface": iface, "model_version": 2 }));
    let d = json(ok(&["detach", "--iface", iface, "--json"]));
    assert_eq!(d["result"], "detached", "{d}");
    let again = json(ok(&["detach", "--iface", iface, "--json"]));
    assert_eq!(again["result"], "not_attached", "{again}");
    // A foreground attach has no JSON result to give.
    let out = fails(&["attach", "--iface", iface, "--model", &models.two, "--json"]);
    assert!(stderr(&out).contains("--pin"), "{}", stderr(&out));
}
