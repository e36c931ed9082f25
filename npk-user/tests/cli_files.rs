//! What `npk` does to the files and streams it is given: outputs are written only where and
//! when they should be, inputs are read with bounds, and a closed or full stdout is handled.

use std::{
    ffi::{CString, OsStr},
    fs::{self, File},
    io::Read,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::FileTypeExt},
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use npk::{
    model_file::ModelFile,
    packets::synth::{FrameSpec, v4_mapped},
};
use npk_common::packet::{FlowKey, PROTO_UDP};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use tempfile::TempDir;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

fn npk(args: &[impl AsRef<OsStr>]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_npk"));
    c.args(args);
    c
}

fn output(args: &[impl AsRef<OsStr>]) -> Output {
    npk(args).output().expect("run npk")
}

/// Expects failure with one `npk: error:` line containing every one of `parts`.
#[track_caller]
fn fails_with(out: &Output, parts: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.starts_with("npk: error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in parts {
        assert!(stderr.contains(part), "expected '{part}' in: {stderr}");
    }
    stderr
}

/// The same training run gives the same model (the file's creation time aside).
#[track_caller]
fn same_model(a: &Path, b: &Path) {
    let (a, b) = (ModelFile::load(a).unwrap(), ModelFile::load(b).unwrap());
    assert_eq!((a.mlp, a.quantized), (b.mlp, b.quantized));
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--data",
        data("iris.csv").to_str().unwrap(),
        "--epochs",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn model(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("m.npk");
    let out = output(&train_args(&path, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A pcap of `n` UDP frames of one flow.
fn capture(n: u8) -> Vec<u8> {
    let frame = FrameSpec {
        key: FlowKey {
            src: v4_mapped([10, 0, 0, 1]),
            dst: v4_mapped([10, 0, 0, 2]),
            src_port: 1000,
            dst_port: 53,
            protocol: PROTO_UDP,
            _pad: [0; 3],
        },
        ipv6: false,
        vlan: None,
        options: 0,
        tcp_flags: 0,
        ttl: 64,
        payload: 20,
    }
    .build();
    let mut w = PcapWriter::with_header(Vec::new(), PcapHeader::default()).unwrap();
    for i in 0..n {
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(u64::from(i)),
            frame.len() as u32,
            &frame,
        ))
        .unwrap();
    }
    w.into_writer()
}

fn features(pcap: &Path, out: &Path) -> Output {
    output(&[
        OsStr::new("features"),
        OsStr::new("--pcap"),
        pcap.as_os_str(),
        OsStr::new("--label"),
        OsStr::new("1"),
        OsStr::new("--out"),
        out.as_os_str(),
    ])
}

/// A pipe whose reading end is already closed: every write to the other end is EPIPE.
fn reader_gone() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe() fills both descriptors, each then owned exactly once.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

fn dev_full() -> Stdio {
    Stdio::from(File::options().write(true).open("/dev/full").unwrap())
}

/// Runs npk to its end within `limit`; returns its status, stderr and peak memory (KiB).
#[expect(
    clippy::zombie_processes,
    reason = "wait4 reaps the child: it also reports the child's peak memory"
)]
fn bounded(args: &[impl AsRef<OsStr>], limit: Duration) -> (ExitStatus, String, i64) {
    let mut child = npk(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: a zeroed rusage is valid; wait4 only writes it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            let status = std::os::unix::process::ExitStatusExt::from_raw(status);
            return (status, stderr, usage.ru_maxrss);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "npk {:?} still running after {limit:?}",
                args.first().map(|a| a.as_ref())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_device_or_a_symlink_given_as_out_stays_what_it_was() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/stdout's own shape, in a place of our own: a link to this process's fd 1.
    let stdout_link = dir.path().join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &stdout_link).unwrap();
    let out = output(&train_args(&stdout_link, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::symlink_metadata(&stdout_link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(&out.stdout[..4], b"NPKF", "the model went to stdout, alone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model written to"),
        "the report on stderr: {stderr}"
    );

    // A character device node (/dev/null's numbers) is written in place.
    let null = dir.path().join("null");
    let c_path = CString::new(null.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; mknod reads it only.
    let made = unsafe { libc::mknod(c_path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod needs root (CI runs as root)");
    assert!(output(&train_args(&null, &[])).status.success());
    assert!(fs::metadata(&null).unwrap().file_type().is_char_device());

    // A symlink to a model: the link stays, its target gets the new model.
    let real = model(&dir);
    let before = fs::read(&real).unwrap();
    let link = dir.path().join("link.npk");
    std::os::unix::fs::symlink("m.npk", &link).unwrap();
    assert!(
        output(&train_args(&link, &["--seed", "2"]))
            .status
            .success()
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_ne!(fs::read(&real).unwrap(), before);
    assert_eq!(
        names_in(dir.path()),
        ["link.npk", "m.npk", "null", "stdout"]
    );
}

#[test]
fn an_output_that_is_an_input_is_refused_with_the_input_intact() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("in.pcap");
    fs::write(&pcap, capture(3)).unwrap();
    let e = fails_with(&features(&pcap, &pcap), &["is also the input"]);
    assert!(e.contains(pcap.to_str().unwrap()), "{e}");
    assert_eq!(fs::read(&pcap).unwrap(), capture(3));
    // The same through a hard link, and for train's --data.
    let csv = dir.path().join("iris.csv");
    fs::copy(data("iris.csv"), &csv).unwrap();
    let alias = dir.path().join("alias.csv");
    fs::hard_link(&csv, &alias).unwrap();
    let args: Vec<&OsStr> = ["train", "--data"]
        .map(OsStr::new)
        .into_iter()
        .chain([csv.as_os_str(), OsStr::new("--out"), alias.as_os_str()])
        .collect();
    fails_with(&output(&args), &["alias.csv: is also the input"]);
    assert_eq!(fs::read(&csv).unwrap(), fs::read(data("iris.csv")).unwrap());
    assert_eq!(names_in(dir.path()), ["alias.csv", "in.pcap", "iris.csv"]);
}

#[test]
fn a_failed_features_run_leaves_the_output_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    fs::write(&out, "precious\n").unwrap();
    let missing = dir.path().join("missing.pcap");
    fails_with(&features(&missing, &out), &["cannot read", "missing.pcap"]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "precious\n");

    // A capture cut inside its third record: two rows were made, none may be left behind.
    let cut = dir.path().join("cut.pcap");
    let whole = capture(3);
    fs::write(&cut, &whole[..whole.len() - 10]).unwrap();
    let fresh = dir.path().join("fresh.csv");
    fails_with(&features(&cut, &fresh), &["record 3"]);
    fails_with(&features(&cut, &out), &["record 3"]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "precious\n");
    assert_eq!(names_in(dir.path()), ["cut.pcap", "out.csv"]);

    // And a good run replaces it.
    fs::write(&cut, &whole).unwrap();
    assert!(features(&cut, &out).status.success());
    assert_eq!(fs::read_to_string(&out).unwrap().lines().count(), 4);
}

#[test]
fn a_failed_capture_leaves_no_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("live.csv");
    let args: Vec<&OsStr> = [
        "capture",
        "--iface",
        "nosuchif0",
        "--label",
        "0",
        "--seconds",
        "1",
        "--out",
    ]
    .map(OsStr::new)
    .into_iter()
    .chain([csv.as_os_str()])
    .collect();
    fails_with(&output(&args), &["nosuchif0"]);
    assert_eq!(names_in(dir.path()), Vec::<String>::new());
}

#[test]
fn an_unwritable_out_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let digits = data("digits.csv");
    for (out, message) in [
        (
            dir.path().join("no/such/m.npk"),
            "does not exist".to_string(),
        ),
        (dir.path().to_owned(), "is a directory".into()),
        (
            PathBuf::from("/proc/m.npk"),
            "cannot create a file in /proc".into(),
        ),
    ] {
        let args: Vec<&OsStr> = ["train", "--data"]
            .map(OsStr::new)
            .into_iter()
            .chain([digits.as_os_str(), OsStr::new("--epochs"), OsStr::new("20")])
            .chain([OsStr::new("--out"), out.as_os_str()])
            .collect();
        let start = Instant::now();
        let run = output(&args);
        let e = fails_with(&run, &[out.to_str().unwrap(), &message]);
        assert!(
            !String::from_utf8_lossy(&run.stdout).contains("epoch"),
            "trained before failing: {e}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn endless_or_waiting_inputs_are_refused_quickly_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c_path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string; mkfifo reads it only.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let csv = dir.path().join("x.csv");
    for (args, message) in [
        (
            vec![OsStr::new("inspect"), OsStr::new("/dev/zero")],
            "/dev/zero: is a character device, not a regular file",
        ),
        (
            vec![OsStr::new("inspect"), fifo.as_os_str()],
            "fifo: is a FIFO, not a regular file",
        ),
        (
            ["features", "--pcap", "/dev/zero", "--label", "0", "--out"]
                .map(OsStr::new)
                .into_iter()
                .chain([csv.as_os_str()])
                .collect(),
            "/dev/zero: not a pcap or pcapng file",
        ),
    ] {
        let (status, stderr, max_rss_kib) = bounded(&args, Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(message),
            "expected '{message}' in: {stderr}"
        );
        assert!(max_rss_kib < 64 << 10, "{max_rss_kib} KiB for {args:?}");
    }
    assert!(!csv.exists());
}

#[test]
fn a_reader_that_goes_away_is_a_quiet_end() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    // `npk inspect M | head -c1`, the reader gone before the first write.
    for json in [false, true] {
        let mut args = vec![OsStr::new("inspect"), m.as_os_str()];
        if json {
            args.push(OsStr::new("--json"));
        }
        let out = npk(&args).stdout(reader_gone()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stderr, "");
    }
    // `npk train ... | head -1`: training goes on and the model is written.
    let out_path = dir.path().join("piped.npk");
    let out = npk(&train_args(&out_path, &[]))
        .stdout(reader_gone())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
    same_model(&out_path, &m);
}

#[test]
fn a_full_stdout_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    for args in [
        vec![OsStr::new("--help")],
        vec![OsStr::new("inspect"), OsStr::new("--help")],
        vec![OsStr::new("inspect"), m.as_os_str()],
        vec![OsStr::new("inspect"), m.as_os_str(), OsStr::new("--json")],
    ] {
        let out = npk(&args).stdout(dev_full()).output().unwrap();
        fails_with(&out, &["No space left on device"]);
    }
    // Training still writes its model, then reports that stdout is full.
    let full = dir.path().join("full.npk");
    let out = npk(&train_args(&full, &[]))
        .stdout(dev_full())
        .output()
        .unwrap();
    fails_with(
        &out,
        &["writing to standard output: No space left on device"],
    );
    same_model(&full, &m);
}

/// Commands beyond inspect and train that print a report and need no interface: eval (text
/// and JSON), verify (BPF_PROG_TEST_RUN, no attachment) and a userspace server's ready line.
fn report_commands(m: &Path, port: u16) -> Vec<Vec<String>> {
    let (m, iris) = (m.to_str().unwrap(), data("iris.csv"));
    let eval = ["eval", "--model", m, "--data", iris.to_str().unwrap()];
    let verify = ["verify", "--packets", "200"];
    let port = port.to_string();
    let serve = ["serve", "--user", "--bind", "127.0.0.1", "--port", &port];
    let mut commands = Vec::new();
    for command in [&eval[..], &verify, &serve] {
        for json in [false, true] {
            let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
            if json {
                args.push("--json".into());
            }
            commands.push(args);
        }
    }
    commands
}

/// A UDP port on 127.0.0.1 that nothing is bound to (as far as this process can tell).
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// `npk serve --user` on `port` whose ready line has been read: its stdout is the pipe returned.
fn user_server(
    port: u16,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    use std::io::BufRead;
    let mut server = npk(&[
        "serve",
        "--user",
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--seconds",
        "60",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert!(ready.starts_with("serving port"), "{ready:?}");
    (server, stdout)
}

fn client_args(port: u16) -> Vec<String> {
    [
        "client",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--requests",
        "200",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn every_report_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    for args in report_commands(&m, free_udp_port()) {
        let out = npk(&args).stdout(reader_gone()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let port = free_udp_port();
    let (server, stdout) = user_server(port);
    for json in [false, true] {
        let mut args = client_args(port);
        if json {
            args.push("--json".into());
        }
        let out = npk(&args).stdout(reader_gone()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
    // The server's reader goes away too: its final counters end it quietly at SIGINT.
    drop(stdout);
    assert_eq!(unsafe { libc::kill(server.id() as i32, libc::SIGINT) }, 0);
    let out = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A failed run is still a failure when its report cannot be printed.
    let out = npk(&client_args(free_udp_port()))
        .stdout(reader_gone())
        .output()
        .unwrap();
    fails_with(&out, &["no replies to "]);
}

#[test]
fn every_report_fails_on_a_full_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(&dir);
    for args in report_commands(&m, free_udp_port()) {
        let out = npk(&args).stdout(dev_full()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.ends_with(
                "npk: error: writing to standard output: No space left on device (os error 28)\n"
            ),
            "{args:?}: {stderr}"
        );
    }
    let port = free_udp_port();
    let (mut server, _stdout) = user_server(port);
    let out = npk(&client_args(port)).stdout(dev_full()).output().unwrap();
    fails_with(
        &out,
        &["writing to standard output: No space left on device"],
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Behaviour tests above cover the main commands; this keeps the rest from going back to
/// `println!`/`eprintln!`, which panic on a closed or full stream.
#[test]
fn no_command_prints_with_a_panicking_macro() {
    fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension() == Some(OsStr::new("rs"))
                // Unit tests print their measurements.
                && path.file_name() != Some(OsStr::new("tests.rs"))
            {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    assert!(files.len() > 20, "{files:?}");
    let mut offenders = Vec::new();
    for file in &files {
        for (i, line) in fs::read_to_string(file).unwrap().lines().enumerate() {
            let code = line.trim_start();
            let printing = ["println!", "print!", "eprintln!", "eprint!"]
                .iter()
                .any(|m| {
                    code.split(|c: char| !c.is_alphanumeric() && c != '_' && c != '!')
                        .any(|w| w == *m)
                });
            if printing && !code.starts_with("//") {
                offenders.push(format!("{}:{}: {code}", file.display(), i + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

/// `--out -` is standard output, written through the descriptor the shell gave (a pipe here):
/// the model or the CSV alone on stdout, reports on stderr, no file named `-`.
#[test]
fn out_dash_writes_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[String]| {
        let out = npk(args).current_dir(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let trained = run(&train_args(Path::new("-"), &[]));
    assert_eq!(
        &trained.stdout[..4],
        b"NPKF",
        "the model went to stdout, alone"
    );
    assert!(String::from_utf8_lossy(&trained.stderr).contains("model written to"));

    let pcap = dir.path().join("c.pcap");
    fs::write(&pcap, capture(5)).unwrap();
    let args: Vec<String> = ["features", "--pcap", pcap.to_str().unwrap(), "--label", "0"]
        .into_iter()
        .chain(["--out", "-"])
        .map(String::from)
        .collect();
    let csv = String::from_utf8(run(&args).stdout).unwrap();
    assert!(csv.starts_with("ip_version,"), "{csv}");
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(!dir.path().join("-").exists(), "a file named - was written");
}

/// Man pages and completions come from the clap definitions: a page per command, each a
/// roff page named after it; bash completion knows the options; a missing directory is named.
#[test]
fn man_pages_and_completions_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for command in [
        "npk",
        "npk-attach",
        "npk-train",
        "npk-status",
        "npk-completions",
    ] {
        let page = fs::read_to_string(dir.path().join(format!("{command}.1"))).unwrap();
        assert!(
            page.contains(&format!(".TH {} 1", command.to_uppercase())),
            "{command}: {page}"
        );
    }
    let help = String::from_utf8(output(&["--help"]).stdout).unwrap();
    let commands = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.trim_start().starts_with("help "))
        .count();
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), commands + 1);
    let missing = dir.path().join("nope");
    fails_with(
        &output(&["man", "--dir", missing.to_str().unwrap()]),
        &[missing.to_str().unwrap()],
    );

    let bash = output(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).unwrap();
    assert!(
        bash.contains("complete -F") && bash.contains("--iface"),
        "{bash}"
    );
}

/// A gzip-compressed capture (`*.pcap.gz`) is read through the decompressor: the same rows as
/// the plain file.
#[test]
fn a_gzip_compressed_capture_gives_the_rows_of_the_plain_one() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("c.pcap");
    fs::write(&plain, capture(7)).unwrap();
    let gz = dir.path().join("c.pcap.gz");
    let mut encoder =
        flate2::write::GzEncoder::new(fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    encoder.write_all(&capture(7)).unwrap();
    encoder.finish().unwrap();
    let rows = |pcap: &Path, name: &str| {
        let out = dir.path().join(name);
        let run = features(pcap, &out);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        fs::read_to_string(out).unwrap()
    };
    let from_plain = rows(&plain, "plain.csv");
    assert_eq!(from_plain.lines().count(), 8, "{from_plain}");
    assert_eq!(rows(&gz, "gz.csv"), from_plain);
}

/// `npk cmd ARGS` with `input` on its standard input.
fn with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = npk(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// `-` reads standard input: a capture piped into `features` gives the rows of the file, a
/// CSV piped into `train` the model of the file, into `eval` its scores; errors say "standard
/// input".
#[test]
fn a_dash_reads_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("c.pcap");
    fs::write(&pcap, capture(7)).unwrap();
    let from_file = dir.path().join("file.csv");
    assert!(features(&pcap, &from_file).status.success());
    let piped = with_stdin(
        &["features", "--pcap", "-", "--label", "1", "--out", "-"],
        &capture(7),
    );
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert_eq!(
        String::from_utf8(piped.stdout).unwrap(),
        fs::read_to_string(&from_file).unwrap()
    );
    fails_with(
        &with_stdin(
            &["features", "--pcap", "-", "--label", "1", "--out", "-"],
            b"junk",
        ),
        &["standard input: not a pcap or pcapng file"],
    );

    let iris = fs::read(data("iris.csv")).unwrap();
    let (a, b) = (dir.path().join("a.npk"), dir.path().join("b.npk"));
    assert!(output(&train_args(&a, &[])).status.success());
    let mut args = train_args(&b, &[]);
    args[2] = "-".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = with_stdin(&args, &iris);
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    same_model(&a, &b);
    let scored = with_stdin(
        &[
            "eval",
            "--model",
            a.to_str().unwrap(),
            "--data",
            "-",
            "--json",
        ],
        &iris,
    );
    assert!(
        scored.status.success(),
        "{}",
        String::from_utf8_lossy(&scored.stderr)
    );
    fails_with(
        &with_stdin(&args, b"a,b,label\n1,2,0\n1,x,1\n"),
        &["standard input", "line 3"],
    );
}
