//! Reading the summary table of `strace -c`: where a server's system calls go.
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

use serde::Serialize;

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
