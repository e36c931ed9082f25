//! Counting a server's system calls: `strace -c -f` attached to the serving process, and
//! reading its summary table.
//!
//! The table is fixed-width with right-aligned numbers:
//! ```text
//! % time     seconds  usecs/call     calls    errors syscall
//! ------ ----------- ----------- --------- --------- ----------------
//!  81.15    0.213075           2     99874           sendto
//! ...
//! ------ ----------- ----------- --------- --------- ----------------
//! 100.00    0.262569           1    200211        19 total
//! ```
//! Columns are located from the header line, so a wider or narrower layout still parses.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Instant,
};

use serde::Serialize;

use super::{
    ServeBenchError,
    children::{EXIT_TIMEOUT, line_channel, wait_timeout},
};

/// `strace -c` attached to the serving process: it counts the serving phase only, not the
/// startup (loading and verifying the program alone takes thousands of calls).
pub(super) struct Tracer {
    child: Child,
    file: PathBuf,
}

impl Tracer {
    /// Attaches `strace -c -f -o file` to process `pid` and waits until it traces.
    pub(super) fn attach(pid: u32, file: &Path) -> Result<Self, ServeBenchError> {
        let mut child = Command::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(file)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ServeBenchError::StartStrace)?;
        let stderr = child
            .stderr
            .take()
            .ok_or(ServeBenchError::NoPipe("stderr"))?;
        let tracer = Self {
            child,
            file: file.to_path_buf(),
        };
        let lines = line_channel(stderr);
        let start = Instant::now();
        while start.elapsed() < EXIT_TIMEOUT {
            match lines.recv_timeout(std::time::Duration::from_millis(100)) {
                Ok(line) if line.contains("attached") => {
                    // Keep draining strace's messages so that it never blocks on them.
                    std::thread::spawn(move || while lines.recv().is_ok() {});
                    return Ok(tracer);
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Err(ServeBenchError::StraceNotAttached { pid })
    }

    /// strace's table, once the traced process is gone (strace writes it then).
    pub(super) fn table(&mut self) -> Result<SyscallTable, ServeBenchError> {
        let traced =
            wait_timeout(&mut self.child, EXIT_TIMEOUT).map_err(ServeBenchError::WaitStrace)?;
        if !traced {
            return Err(ServeBenchError::StraceUnfinished);
        }
        let text = std::fs::read_to_string(&self.file).map_err(|source| {
            ServeBenchError::ReadStraceSummary {
                path: self.file.clone(),
                source,
            }
        })?;
        parse(&text).map_err(|source| ServeBenchError::ParseStraceSummary {
            path: self.file.clone(),
            source,
        })
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if !wait_timeout(&mut self.child, EXIT_TIMEOUT).unwrap_or(false) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StraceError {
    #[error("no `% time ... calls ... syscall` header line: not an `strace -c` summary")]
    NoHeader,
    #[error("line {line}: `{text}`: {field} is not a number")]
    Field {
        line: usize,
        text: String,
        field: &'static str,
    },
    #[error("no `total` line after the header")]
    NoTotal,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyscallRow {
    pub name: String,
    pub calls: u64,
    pub errors: u64,
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyscallTable {
    /// In strace's order (most time first).
    pub rows: Vec<SyscallRow>,
    pub total_calls: u64,
    pub total_errors: u64,
    /// The table as strace printed it.
    #[serde(skip)]
    pub text: String,
}

/// Parses the `strace -c` summary in `text` (strace's own messages around it are skipped).
pub fn parse(text: &str) -> Result<SyscallTable, StraceError> {
    let lines: Vec<&str> = text.lines().collect();
    let (header_at, header) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.starts_with("% time") && l.contains("calls") && l.contains("syscall"))
        .ok_or(StraceError::NoHeader)?;
    // Numbers end where their header label ends; the name starts where "syscall" starts.
    let end_of = |label: &str| header.find(label).map(|i| i + label.len());
    let (Some(seconds_end), Some(calls_end), Some(name_at)) =
        (end_of("seconds"), end_of("calls"), header.find("syscall"))
    else {
        return Err(StraceError::NoHeader);
    };
    let errors_end = end_of("errors");
    let mut rows = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(header_at + 1) {
        if line.starts_with("------") || line.trim().is_empty() {
            continue;
        }
        let field = |end: usize, width: usize, name: &'static str| -> Result<&str, StraceError> {
            let start = end.saturating_sub(width);
            line.get(start..end.min(line.len()))
                .map(str::trim)
                .ok_or_else(|| StraceError::Field {
                    line: i + 1,
                    text: line.to_string(),
                    field: name,
                })
        };
        let bad = |name| StraceError::Field {
            line: i + 1,
            text: line.to_string(),
            field: name,
        };
        let name = line.get(name_at..).map(str::trim).unwrap_or("");
        let seconds: f64 = field(seconds_end, 11, "seconds")?
            .parse()
            .map_err(|_| bad("seconds"))?;
        let calls: u64 = field(calls_end, 9, "calls")?
            .parse()
            .map_err(|_| bad("calls"))?;
        let errors: u64 = match errors_end {
            Some(end) => match field(end, 9, "errors")? {
                "" => 0,
                e => e.parse().map_err(|_| bad("errors"))?,
            },
            None => 0,
        };
        if name == "total" {
            return Ok(SyscallTable {
                rows,
                total_calls: calls,
                total_errors: errors,
                text: lines[header_at..=i].join("\n"),
            });
        }
        rows.push(SyscallRow {
            name: name.to_string(),
            calls,
            errors,
            seconds,
        });
    }
    Err(StraceError::NoTotal)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
strace: Process 4242 attached
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 81.15    0.213075           2     99874           sendto
 18.40    0.048311           0    100123        19 recvfrom
  0.45    0.001183         591         2           bpf
------ ----------- ----------- --------- --------- ----------------
100.00    0.262569           1    199999        19 total
";

    #[test]
    fn parses_rows_and_total() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.total_calls, 199_999);
        assert_eq!(t.total_errors, 19);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(
            t.rows[1],
            SyscallRow {
                name: "recvfrom".into(),
                calls: 100_123,
                errors: 19,
                seconds: 0.048311
            }
        );
        assert!(t.text.starts_with("% time") && t.text.ends_with("total"));
    }

    #[test]
    fn broken_tables_are_errors() {
        assert_eq!(parse("hello\n"), Err(StraceError::NoHeader));
        let no_total: String = SAMPLE.lines().take(6).collect::<Vec<_>>().join("\n");
        assert_eq!(parse(&no_total), Err(StraceError::NoTotal));
        let garbled = SAMPLE.replace("99874", "9x874");
        assert!(matches!(
            parse(&garbled),
            Err(StraceError::Field {
                line: 4,
                field: "calls",
                ..
            })
        ));
    }
}
