//! What the integration tests that drive the release `npk` binary share.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// target/release/npk, next to target/release/deps/ where this test runs.
pub fn npk() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("npk");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build --release` builds it",
        bin.display()
    );
    bin
}

/// A packet-feature model with `classes` classes and one hidden layer of 8, trained by `npk
/// train` into `dir` from separable synthetic rows; returns the model file's path. Where the
/// kernel has no TCX (< 6.6) it reads the ingress features only (`--ingress-only`), as `npk
/// attach` requires there.
#[allow(dead_code)] // not every test binary that includes this module trains a model
pub fn trained_model(dir: &Path, classes: u32) -> String {
    trained_model_as(dir, classes, 8, &format!("m{classes}.npk"))
}

/// [`trained_model`] with `hidden` neurons, `epochs` 2, into `dir/name`.
#[allow(dead_code)] // as above
pub fn trained_model_as(dir: &Path, classes: u32, hidden: usize, name: &str) -> String {
    let csv = dir.join(format!("p{classes}.csv"));
    let mut text = npk_common::packet::FEATURE_NAMES.join(",") + ",label\n";
    for row in 0..240u32 {
        let class = row % classes;
        let values: Vec<String> = (0..npk_common::packet::FEATURE_NAMES.len() as u32)
            .map(|f| ((row * 7 + f * 13) % 50 + class * 40).to_string())
            .collect();
        text += &format!("{},{class}\n", values.join(","));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.join(name).to_str().unwrap().to_string();
    let ingress_only = (!npk::kernel::probe::kernel().tcx).then_some("--ingress-only");
    let status = Command::new(npk())
        .args(["train", "--data", csv.to_str().unwrap(), "--epochs", "2"])
        .args(["--hidden", &hidden.to_string(), "--out", &out])
        .args(ingress_only)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "npk train failed");
    out
}

/// A long-running npk whose stdout and stderr lines arrive on a channel.
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`Running::start`] with these environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(npk())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line containing `text` (waits up to a minute: loading is slow under load).
    #[track_caller]
    pub fn wait_for(&mut self, text: &str) -> String {
        self.wait_for_while(text, Duration::from_secs(60), || {})
    }

    /// The first line containing `text` within `within`, running `tick` every 200 ms
    /// meanwhile (to send the traffic that makes npk print it).
    #[track_caller]
    pub fn wait_for_while(
        &mut self,
        text: &str,
        within: Duration,
        mut tick: impl FnMut(),
    ) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            tick();
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains(text) {
                    return line;
                }
            }
        }
        panic!("no {text:?} from npk; output: {:?}", self.seen);
    }

    /// The next line, if one arrives within `within`.
    #[allow(dead_code)] // as above
    pub fn next_line(&mut self, within: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(within).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the exit (at most `within`, then kills it and fails), returns whether it
    /// succeeded and every line.
    #[track_caller]
    pub fn exit(mut self, within: Duration) -> (bool, Vec<String>) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "npk did not exit within {within:?}; output: {:?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (status.success(), self.seen)
    }
}
