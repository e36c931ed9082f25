//! Operating npk, against the real kernel (root), through the release `npk` binary: the
//! Prometheus exporter scraped beside `npk stats --json` and a kernel server, checked by
//! `promtool`; the systemd unit's commands attaching from a config file, surviving the
//! process and detaching.

mod common;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{TcpStream, UdpSocket},
    path::Path,
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::{Running, npk, trained_model};
use npk::netlab::NetLab;

#[track_caller]
fn ok(args: &[&str]) -> Output {
    let out = Command::new(npk()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "npk {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// SIGTERM, then the exit status and every line, waiting at most 10 s.
#[track_caller]
fn stop(running: Running) -> (bool, Vec<String>) {
    running.signal(libc::SIGTERM);
    running.exit(Duration::from_secs(10))
}

/// The body of `GET /metrics` at `addr`.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// `datagrams` UDP datagrams (a 4-byte counter each) from the lab's namespace end, source
/// port `port` (0: any), to port 9 of its host end.
fn send_udp(lab: &NetLab, port: u16, datagrams: u32) {
    let to_host = std::net::SocketAddr::from((lab.host_addr, 9));
    lab.in_netns(|| {
        let s = UdpSocket::bind((lab.ns_addrs[0], port)).unwrap();
        for i in 0..datagrams {
            s.send_to(&i.to_le_bytes(), to_host).unwrap();
        }
    })
    .unwrap();
}

/// `name{labels} value` lines whose labels contain `label`, as name (with the other labels)
/// -> value.
fn samples(scrape: &str, label: &str) -> BTreeMap<String, f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(label))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.replace(label, ""), value.parse().unwrap())
        })
        .collect()
}

/// The XDP program id `ip link` reports on `iface`.
fn xdp_program_id(iface: &str) -> u32 {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let after = text
        .split("prog/xdp id ")
        .nth(1)
        .unwrap_or_else(|| panic!("no XDP on {iface}: {text}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

#[track_caller]
fn stats_json(iface: &str) -> serde_json::Value {
    let out = ok(&["stats", "--iface", iface, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_exporter_shows_what_npk_stats_shows_and_promtool_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 3);
    let classifier_lab = NetLab::create(1).unwrap();
    let server_lab = NetLab::create(1).unwrap();
    let iface = classifier_lab.host_if.as_str();
    ok(&[
        "attach",
        "--iface",
        iface,
        "--model",
        &model,
        "--mode",
        "skb",
        "--pin",
        "--reinfer",
        "4",
    ]);
    let port = 20000 + std::process::id() % 20000;
    let port_arg = port.to_string();
    let mut server = Running::start(&[
        "serve",
        "--kernel",
        &server_lab.host_if,
        "--port",
        &port_arg,
        "--json",
    ]);
    server.wait_for("\"ready\"");
    let exporter = {
        let mut e = Running::start(&["exporter", "--listen", "127.0.0.1:0"]);
        let line = e.wait_for("serving metrics on http://");
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        (e, addr)
    };

    // Traffic through both, then none: UDP to the classified host, and requests to the server
    // that are not valid (24 bytes: answered BAD_MAGIC) or shorter than any reply (refused).
    send_udp(&classifier_lab, 0, 300);
    let to_server = std::net::SocketAddr::from((server_lab.host_addr, port as u16));
    server_lab
        .in_netns(|| {
            let s = UdpSocket::bind((server_lab.ns_addrs[0], 0)).unwrap();
            for _ in 0..25 {
                s.send_to(&b"npk?".repeat(6), to_server).unwrap();
                s.send_to(b"npk?", to_server).unwrap();
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // The same moment: stats before and after the scrape agree (a stray frame makes it retry).
    let (before, text) = (0..5)
        .find_map(|_| {
            let before = stats_json(iface);
            let text = scrape(&exporter.1);
            (stats_json(iface) == before).then_some((before, text))
        })
        .expect("the counters kept moving with the traffic stopped");

    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|mut p| {
            p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            p.wait_with_output().unwrap()
        })
        .expect("promtool is missing: scripts/setup.sh installs it (Debian package prometheus)");
    assert!(
        check.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let ours = samples(&text, &format!("interface=\"{iface}\""));
    let get = |series: &str| {
        *ours
            .get(series)
            .unwrap_or_else(|| panic!("no {series} for {iface} in\n{text}"))
    };
    let stat = |key: &str| before[key].as_u64().unwrap() as f64;
    assert!(stat("packets") >= 300.0, "{before}");
    assert!(
        stat("cache_hits") > 0.0,
        "--reinfer 4 reuses verdicts: {before}"
    );
    for (key, metric) in [
        ("packets", "npk_packets_total"),
        ("dropped", "npk_dropped_packets_total"),
        ("unsure", "npk_unsure_packets_total"),
        ("non_ip", "npk_non_ip_packets_total"),
        ("unparsed", "npk_unparsed_packets_total"),
        ("truncated", "npk_truncated_packets_total"),
        ("no_model", "npk_no_model_packets_total"),
        ("inferences", "npk_inferences_total"),
        ("cache_hits", "npk_cache_hit_packets_total"),
        ("swap_retries", "npk_swap_retry_inferences_total"),
        ("swap_failures", "npk_swap_failure_packets_total"),
        ("samples_lost", "npk_lost_samples_total"),
    ] {
        assert_eq!(
            get(&format!("{metric}{{}}")),
            stat(key),
            "{key} vs {metric}"
        );
    }
    for (key, metric) in [
        ("class_packets", "npk_class_packets_total"),
        ("class_bytes", "npk_class_bytes_total"),
    ] {
        for (class, n) in before[key].as_array().unwrap().iter().enumerate() {
            let series = format!("{metric}{{,class=\"{class}\"}}");
            assert_eq!(get(&series), n.as_u64().unwrap() as f64, "{series}");
        }
    }
    assert!(
        ours.keys()
            .any(|k| k.starts_with("npk_model_info{,version=\"1\",id=\"")),
        "{text}"
    );
    assert_eq!(get("npk_model_version{}"), 1.0);
    if let Some(ns) = before["avg_ns_per_packet"].as_f64() {
        let seconds = get("npk_program_seconds_per_run{}");
        assert!(
            (seconds * 1e9 - ns).abs() <= 1e-6 * ns,
            "{seconds} s vs {ns} ns"
        );
    }

    // The server: its own final counters equal what the exporter showed.
    // Labelled by its interface (a reload's new program id is the same server).
    let theirs = samples(&text, &format!("interface=\"{}\"", server_lab.host_if));
    let (exporter, _) = exporter;
    let (served_ok, lines) = stop(server);
    assert!(served_ok, "{lines:?}");
    let stopped: serde_json::Value = lines
        .iter()
        .find(|l| l.contains("\"stopped\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no stopped line: {lines:?}"));
    assert_eq!(stopped["requests"].as_u64(), Some(50), "{stopped}");
    assert_eq!(
        stopped["refused_amplifying"].as_u64(),
        Some(25),
        "{stopped}"
    );
    assert_eq!(
        theirs.get("npk_server_requests_total{}"),
        Some(&50.0),
        "{text}"
    );
    assert_eq!(
        theirs.get("npk_server_replies_total{,status=\"BAD_MAGIC\"}"),
        Some(&(stopped["replies"]["BAD_MAGIC"].as_u64().unwrap() as f64)),
        "{stopped}\n{text}"
    );
    assert_eq!(
        theirs.get("npk_server_refused_amplifying_requests_total{}"),
        Some(&25.0),
        "{text}"
    );

    let (stopped_ok, lines) = stop(exporter);
    assert!(
        stopped_ok && lines.iter().any(|l| l.contains("exporter stopped")),
        "{lines:?}"
    );
    ok(&["detach", "--iface", iface]);
}

#[test]
fn a_bad_listen_address_is_refused_with_the_reason() {
    let out = Command::new(npk())
        .args(["exporter", "--listen", "localhost"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--listen") && err.contains("socket address"),
        "{err}"
    );
    // TEST-NET-1: no interface of this host has it.
    let out = Command::new(npk())
        .args(["exporter", "--listen", "192.0.2.1:9595"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--listen 192.0.2.1:9595: cannot listen there"),
        "{err}"
    );
    assert!(err.contains("address"), "{err}");
}

/// deploy/<name> with the installed paths replaced: npk by the binary under test, /etc/npk
/// by `config_dir`.
fn unit_file(name: &str, config_dir: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .replace("/usr/local/bin/npk", npk().to_str().unwrap())
        .replace("/etc/npk/", &format!("{}/", config_dir.display()))
}

/// The unit's `KEY=` command with `%i` as `instance`, split into words (the unit quotes none).
fn unit_command(unit: &str, key: &str, instance: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"));
    line.replace("%i", instance)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn run_unit_command(command: &[String]) -> Output {
    let out = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn has_xdp(iface: &str) -> bool {
    let out = Command::new("ip")
        .args(["link", "show", "dev", iface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (name, instance) in [
        ("npk@.service", "npk@veth7.service"),
        ("npk-exporter.service", "npk-exporter.service"),
    ] {
        let copy = dir.path().join(instance);
        std::fs::write(&copy, unit_file(name, dir.path())).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect(
                "systemd-analyze is missing: scripts/setup.sh installs it (Debian package systemd)",
            );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{name}: {err}"
        );
        // The hardening holds: systemd's exposure score (0-10, lower is safer) stays <= 4.5
        // (9.6 unhardened).
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=45"])
            .arg(&copy)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}{report}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_units_commands_attach_from_the_config_survive_npk_and_detach() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 3);
    let model = Path::new(&model).file_name().unwrap().to_str().unwrap();
    let lab = NetLab::create(1).unwrap();
    let iface = lab.host_if.as_str();
    std::fs::write(
        dir.path().join(format!("{iface}.toml")),
        format!(
            "interface = \"{iface}\"\nmodel = \"{model}\"\nmode = \"skb\"\nreinfer = 2\n\n\
             [actions]\n2 = \"count\"\n"
        ),
    )
    .unwrap();
    let unit = unit_file("npk@.service", dir.path());
    let (start, stop) = (
        unit_command(&unit, "ExecStart", iface),
        unit_command(&unit, "ExecStop", iface),
    );
    let pins = npk::kernel::attach::pin_dir(&iface.parse().unwrap());

    // Twice: `systemctl restart` is ExecStop then ExecStart.
    for round in 0..2 {
        // ExecStart returned: no npk process holds the attachment.
        run_unit_command(&start);
        assert!(has_xdp(iface), "round {round}: not attached");
        assert!(pins.join("link").exists(), "round {round}: no pinned link");
        send_udp(&lab, 0, 50);
        std::thread::sleep(Duration::from_millis(300));
        let stats = stats_json(iface);
        assert!(
            stats["packets"].as_u64().unwrap() >= 50,
            "round {round}: {stats}"
        );
        // reinfer = 2 from the file: every other packet of the flow reuses the verdict.
        assert!(
            stats["cache_hits"].as_u64().unwrap() >= 20,
            "round {round}: {stats}"
        );
        run_unit_command(&stop);
        assert!(
            !has_xdp(iface),
            "round {round}: still attached after ExecStop"
        );
        assert!(
            !pins.exists(),
            "round {round}: pins left in {}",
            pins.display()
        );
    }
}

/// The exporter with 32 descriptors, given 40 idle connections: it serves as many as leave
/// descriptors for a scrape, closes the others as they come, closes the idle ones after their
/// lifetime (10 s), and answers a scrape retried meanwhile (as Prometheus retries); it never
/// exits. Before, accept's EMFILE ended it.
#[test]
fn the_exporter_survives_descriptor_exhaustion_and_idle_clients() {
    use std::os::unix::process::CommandExt;
    let port = 40000 + std::process::id() % 20000;
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(npk());
    command
        .args(["exporter", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 32,
                rlim_max: 32,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut exporter = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the exporter never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        exporter.try_wait().unwrap().is_none(),
        "the exporter exited with idle clients"
    );
    let try_scrape = || -> Option<String> {
        let mut stream = TcpStream::connect(&addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).ok()?;
        (!reply.is_empty()).then_some(reply)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reply = loop {
        if let Some(reply) = try_scrape() {
            break reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scrape answered within 30 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        exporter.try_wait().unwrap().is_none(),
        "the exporter exited"
    );
    drop(idle);
    // SAFETY: kill with a pid we spawned and have not reaped.
    unsafe { libc::kill(exporter.id() as i32, libc::SIGTERM) };
    let out = exporter.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[track_caller]
fn status_json() -> serde_json::Value {
    let out = ok(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `npk status --json`'s attachment on `iface`, if it lists one.
fn listed(status: &serde_json::Value, iface: &str) -> Option<serde_json::Value> {
    status["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["iface"] == iface)
        .cloned()
}

/// `npk status --json` lists the pin directory `dir` as live pins of another network
/// namespace, not as stale ones.
#[track_caller]
fn listed_as_another_namespaces(status: &serde_json::Value, dir: &Path) {
    let pins = status["other_pins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["dir"] == dir.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not listed: {status}", dir.display()));
    assert_eq!(pins["stale"], false, "{pins}");
    let why = pins["why"].as_str().unwrap();
    assert!(why.contains("another network namespace"), "{pins}");
}

/// `npk detach --iface iface` here fails, naming the other network namespace that runs it.
#[track_caller]
fn detach_is_refused_as_another_namespaces(iface: &str) {
    let out = Command::new(npk())
        .args(["detach", "--iface", iface])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("another network namespace"), "{stderr}");
}

/// `npk status` lists a pinned XDP attachment and a foreground TC one as the kernel runs
/// them; a foreground attach in another network namespace (bpffs is shared by all) is listed
/// as held there, not as stale, and `npk cleanup` and `npk detach` leave its pins alone.
#[test]
fn status_lists_what_the_kernel_runs_and_nothing_removes_another_namespaces_pins() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 3);
    let (pinned_lab, foreground_lab, other_lab) = (
        NetLab::create(1).unwrap(),
        NetLab::create(1).unwrap(),
        NetLab::create(1).unwrap(),
    );
    let pinned = pinned_lab.host_if.as_str();
    ok(&[
        "attach", "--iface", pinned, "--model", &model, "--mode", "skb", "--pin",
    ]);
    let mut foreground = Running::start(&[
        "attach",
        "--iface",
        &foreground_lab.host_if,
        "--model",
        &model,
        "--mode",
        "tc",
    ]);
    foreground.wait_for("Ctrl-C detaches");
    // nsenter switches only the network namespace (`ip netns exec` would remount /sys and
    // hide bpffs).
    let mut other = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", other_lab.netns))
        .arg(npk())
        .args(["attach", "--iface", &other_lab.ns_if, "--model", &model])
        .args(["--mode", "skb"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let other_pins = npk::kernel::attach::pin_dir(&other_lab.ns_if.parse().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !other_pins.join("prog").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no pins from the other namespace"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let status = status_json();
    let a = listed(&status, pinned).unwrap_or_else(|| panic!("{pinned} not listed: {status}"));
    assert_eq!(a["mode"], "skb", "{a}");
    assert_eq!(a["pinned"], true, "{a}");
    assert_eq!(a["owner_pid"], serde_json::Value::Null, "{a}");
    assert_eq!(a["program_id"], xdp_program_id(pinned), "{a}");
    assert_eq!(
        (
            a["model"]["version"].as_u64(),
            a["model"]["inputs"].as_u64()
        ),
        // The test model reads the reply features where the kernel counts them (TCX).
        (
            Some(1),
            Some(if npk::kernel::probe::kernel().tcx {
                28
            } else {
                26
            })
        )
    );
    assert!(a["up_s"].as_u64().is_some(), "{a}");
    let f = listed(&status, &foreground_lab.host_if)
        .unwrap_or_else(|| panic!("foreground attachment not listed: {status}"));
    assert_eq!(f["mode"], "tc", "{f}");
    assert_eq!(f["pinned"], false, "{f}");
    assert_eq!(f["owner_pid"], foreground.child.id(), "{f}");
    assert!(listed(&status, &other_lab.ns_if).is_none(), "{status}");
    listed_as_another_namespaces(&status, &other_pins);

    ok(&["cleanup"]);
    assert!(
        other_pins.join("prog").exists(),
        "cleanup removed a running attach's pins"
    );
    detach_is_refused_as_another_namespaces(&other_lab.ns_if);
    assert!(
        other_pins.join("prog").exists(),
        "detach removed a running attach's pins"
    );

    // SAFETY: kill on our own child's pid.
    assert_eq!(unsafe { libc::kill(other.id() as i32, libc::SIGTERM) }, 0);
    assert!(other.wait().unwrap().success());
    let (stopped, lines) = stop(foreground);
    assert!(stopped, "{lines:?}");
    // Its output is a pipe, not a terminal: no counters line a second.
    assert!(
        !lines.iter().any(|l| l.starts_with("packets ")),
        "live lines into a pipe: {lines:?}"
    );
    ok(&["detach", "--iface", pinned]);
    let status = status_json();
    for iface in [pinned, foreground_lab.host_if.as_str()] {
        assert!(
            listed(&status, iface).is_none(),
            "{iface} still listed: {status}"
        );
    }
    assert!(
        !other_pins.exists(),
        "the other namespace's attach left its pins"
    );
}

#[track_caller]
fn ip_link(args: &[&str]) {
    let status = Command::new("ip").arg("link").args(args).status().unwrap();
    assert!(status.success(), "ip link {args:?} failed");
}

/// `nsenter --net` into `netns` running npk with `args` (only the network namespace changes:
/// bpffs stays the host's).
fn npk_in(netns: &str, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{netns}"))
        .arg(npk())
        .args(args)
        .output()
        .unwrap()
}

/// A pinned attachment follows its interface's rename (stats, status, detach by either name),
/// and one pinned in another network namespace is never taken for stale: `npk cleanup` keeps
/// it, `npk detach` here refuses it, `npk detach` there removes it.
#[test]
fn pinned_attachments_survive_renames_and_other_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 3);
    let (renamed_lab, other_lab) = (NetLab::create(1).unwrap(), NetLab::create(1).unwrap());
    let old = renamed_lab.host_if.as_str();
    let new = format!("npkr{}", std::process::id() % 100_000);
    ok(&[
        "attach", "--iface", old, "--model", &model, "--mode", "skb", "--pin",
    ]);
    let id = xdp_program_id(old);
    ip_link(&["set", old, "down"]);
    ip_link(&["set", old, "name", &new]);
    ip_link(&["set", &new, "up"]);
    assert_eq!(
        xdp_program_id(&new),
        id,
        "the program left the renamed interface"
    );
    let pins = npk::kernel::attach::pin_dir(&old.parse().unwrap());

    let attached = npk_in(
        &other_lab.netns,
        &[
            "attach",
            "--iface",
            &other_lab.ns_if,
            "--model",
            &model,
            "--mode",
            "skb",
            "--pin",
        ],
    );
    assert!(
        attached.status.success(),
        "{}",
        String::from_utf8_lossy(&attached.stderr)
    );
    let other_pins = npk::kernel::attach::pin_dir(&other_lab.ns_if.parse().unwrap());

    for name in [old, new.as_str()] {
        assert!(
            stats_json(name)["packets"].as_u64().is_some(),
            "stats --iface {name}"
        );
        ok(&["push", "--iface", name, "--model", &model]);
    }
    let status = status_json();
    let a = listed(&status, &new).unwrap_or_else(|| panic!("{new} not listed: {status}"));
    assert_eq!(a["pins"], pins.to_str().unwrap(), "{a}");
    assert_eq!(a["program_id"], id, "{a}");
    listed_as_another_namespaces(&status, &other_pins);

    ok(&["cleanup"]);
    assert!(
        pins.join("link").exists(),
        "cleanup removed the renamed interface's pins"
    );
    assert!(
        other_pins.join("link").exists(),
        "cleanup removed another namespace's pins"
    );
    detach_is_refused_as_another_namespaces(&other_lab.ns_if);
    assert!(
        other_pins.join("link").exists(),
        "detach removed another namespace's pins"
    );

    ok(&["detach", "--iface", &new]);
    assert!(!has_xdp(&new), "still attached to {new}");
    assert!(!pins.exists(), "pins left in {}", pins.display());
    let detached = npk_in(&other_lab.netns, &["detach", "--iface", &other_lab.ns_if]);
    assert!(
        detached.status.success(),
        "{}",
        String::from_utf8_lossy(&detached.stderr)
    );
    assert!(
        !other_pins.exists(),
        "pins left in {}",
        other_pins.display()
    );
    // Deleting the lab's namespace deletes the pair, whatever its host end is called.
}

/// Lines of `running` that arrive within `within` (until it exits or falls silent).
fn lines_within(running: &mut Running, within: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + within;
    let mut lines = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match running.next_line(left) {
            Some(line) => lines.push(line),
            None => break,
        }
    }
    lines
}

/// `npk events` on a pinned attachment whose every class drops: each event names the
/// datagram's addresses, ports and protocol and says drop; the kernel keeps at most
/// `--event-rate` per second per CPU and `npk events`, `npk stats` and the exporter's counter
/// say how many it did not keep. `--no-drop-events` keeps none; a `sample` class is shown as
/// passed, on a foreground attachment too.
#[test]
fn events_show_each_drop_with_its_addresses_and_count_what_the_rate_limit_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let model = trained_model(dir.path(), 3);
    let lab = NetLab::create(1).unwrap();
    let iface = lab.host_if.as_str();
    let every_class_drops = [
        "--action",
        "0=drop",
        "--action",
        "1=drop",
        "--action",
        "2=drop",
        "--drop-margin",
        "0",
    ];
    let attach = |extra: &[&str]| {
        let args = [
            &[
                "attach", "--iface", iface, "--model", &model, "--mode", "skb", "--pin",
            ],
            &every_class_drops[..],
            extra,
        ]
        .concat();
        ok(&args);
    };
    let send = |datagrams: u32| send_udp(&lab, 4444, datagrams);

    attach(&["--event-rate", "20"]);
    let mut events = Running::start(&["events", "--iface", iface, "--json"]);
    events.wait_for("events of");
    send(300);
    // Two CPUs at most here: 20 events a second on each, the rest over the rate.
    let lines = lines_within(&mut events, Duration::from_secs(3));
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let packets: Vec<_> = parsed.iter().filter(|e| e["type"] == "packet").collect();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        (20..=20 * cpus).contains(&packets.len()),
        "{} events: {lines:?}",
        packets.len()
    );
    for e in &packets {
        assert_eq!(e["action"], "drop", "{e}");
        assert_eq!(e["protocol"], "udp", "{e}");
        assert_eq!(e["src"], lab.ns_addrs[0].to_string(), "{e}");
        assert_eq!(e["src_port"], 4444, "{e}");
        assert_eq!(e["dst"], lab.host_addr.to_string(), "{e}");
        assert_eq!(e["dst_port"], 9, "{e}");
        assert_eq!(e["iface"], iface, "{e}");
        assert_eq!(e["model_version"], 1, "{e}");
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "{e}");
    }
    let stats = stats_json(iface);
    let limited = stats["samples_limited"].as_u64().unwrap();
    assert_eq!(
        limited + packets.len() as u64,
        stats["dropped"].as_u64().unwrap(),
        "every drop is an event or counted over the rate: {stats}"
    );
    let said: u64 = parsed
        .iter()
        .filter(|e| e["type"] == "lost")
        .map(|e| e["over_rate"].as_u64().unwrap())
        .sum();
    assert_eq!(said, limited, "{lines:?}");
    let (stopped, _) = stop(events);
    assert!(stopped);
    ok(&["detach", "--iface", iface]);

    // No drop events: dropped, not sampled, not counted as limited either.
    attach(&["--no-drop-events"]);
    let mut events = Running::start(&["events", "--iface", iface, "--json"]);
    events.wait_for("events of");
    send(50);
    let lines = lines_within(&mut events, Duration::from_secs(2));
    assert!(lines.is_empty(), "{lines:?}");
    let stats = stats_json(iface);
    assert!(stats["dropped"].as_u64().unwrap() >= 50, "{stats}");
    assert_eq!(stats["samples_limited"], 0, "{stats}");
    stop(events);
    ok(&["detach", "--iface", iface]);

    // A foreground attachment whose class 0 is sampled: shown as passed; --count ends it.
    let mut foreground = Running::start(&[
        "attach",
        "--iface",
        iface,
        "--model",
        &model,
        "--mode",
        "skb",
        "--action",
        "0=sample",
        "--action",
        "1=sample",
        "--action",
        "2=sample",
        "--event-rate",
        "0",
    ]);
    foreground.wait_for("Ctrl-C detaches");
    let mut events = Running::start(&["events", "--iface", iface, "--count", "3"]);
    events.wait_for("events of");
    send(10);
    let (exited, lines) = events.exit(Duration::from_secs(10));
    assert!(exited, "--count 3 did not end it: {lines:?}");
    let shown: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" pass class "))
        .collect();
    assert_eq!(shown.len(), 3, "{lines:?}");
    assert!(
        shown[0].contains(&format!(
            "udp {}:4444 -> {}:9",
            lab.ns_addrs[0], lab.host_addr
        )),
        "{lines:?}"
    );
    let (stopped, _) = stop(foreground);
    assert!(stopped);
}

/// `npk bench flood`: a live spoofed SYN flood reaches both programs in turn, each turn says
/// how many frames it ran on and at what cost, and the classifier costs more per frame than
/// parsing alone.
#[test]
fn bench_flood_times_both_programs_under_a_live_flood() {
    let out = std::process::Command::new(npk())
        .args([
            "bench",
            "flood",
            "--hidden",
            "16,16",
            "--seconds",
            "1",
            "--rounds",
            "1",
        ])
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let turns = r["turns"].as_array().unwrap();
    let programs: Vec<&str> = turns
        .iter()
        .map(|t| t["program"].as_str().unwrap())
        .collect();
    assert_eq!(programs[0], "npk_bare", "{r}");
    assert!(programs[1].starts_with("npk_"), "{r}");
    for t in turns {
        assert!(t["frames"].as_u64().unwrap() > 1000, "{r}");
        assert!(t["ns_per_frame"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(r["classifier_over_bare"].as_f64().unwrap() > 1.0, "{r}");
}
