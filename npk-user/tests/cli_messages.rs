//! What `npk` says when it is used wrongly: every refusal names the flag, file, line or limit,
//! once, with the same range in the help, the parse error and the library check.

mod cli_common;

use std::{
    ffi::OsStr,
    process::{Command, Output},
};

use cli_common::{data, npk};

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Expects a command-line error (exit 2) whose first line is `first_line`.
#[track_caller]
fn usage_error(args: &[&str], first_line: &str) {
    let out = npk(args);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some(first_line),
        "{args:?}: {stderr}"
    );
}

/// Expects a run-time error (exit 1): one `npk: error:` line, returned.
#[track_caller]
fn run_error(args: &[impl AsRef<OsStr>]) -> String {
    let out = npk(args);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
        .strip_prefix("npk: error: ")
        .unwrap_or_else(|| panic!("no `npk: error:` prefix: {stderr}"))
        .trim_end()
        .to_string()
}

fn train(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "train".to_string(),
        "--data".into(),
        data("iris.csv").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn help_of(subcommand: &str) -> String {
    let out = npk(&[subcommand, "--help"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn test_split_has_one_range_in_help_parse_error_and_library() {
    let help = help_of("train");
    assert!(help.contains("in (0, 1)"), "{help}");
    for bad in ["0", "1", "-0.5", "1.5"] {
        let args = train(&["--test-split", bad]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        usage_error(
            &args,
            &format!(
                "error: invalid value '{bad}' for '--test-split <F>': test fraction {bad} must be in (0, 1)"
            ),
        );
    }
}

#[test]
fn negative_numbers_parse_and_are_refused_with_the_flag_and_range() {
    for (flag, value, reason) in [
        (
            "--lr",
            "-1",
            "learning rate -1: must be a finite number > 0",
        ),
        ("--lr", "0", "learning rate 0: must be a finite number > 0"),
        (
            "--lr",
            "inf",
            "learning rate inf: must be a finite number > 0",
        ),
        ("--epochs", "-3", "-3 epochs: must be at least 1"),
        ("--epochs", "0", "0 epochs: must be at least 1"),
        ("--batch", "-1", "batch size -1: must be at least 1"),
        ("--batch", "0", "batch size 0: must be at least 1"),
        ("--batch", "x", "\"x\" is not a whole number"),
    ] {
        let value_name = match flag {
            "--lr" => "X",
            "--epochs" => "N",
            _ => "B",
        };
        let args = train(&[flag, value]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        usage_error(
            &args,
            &format!("error: invalid value '{value}' for '{flag} <{value_name}>': {reason}"),
        );
    }
}

#[test]
fn csv_with_another_separator_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let semi = dir.path().join("semi.csv");
    std::fs::write(&semi, "a;b;c;label\n1;2;3;0\n4;5;6;1\n").unwrap();
    assert_eq!(
        run_error(&["train", "--data", semi.to_str().unwrap()]),
        format!(
            "{}: line 1: one column, but the header holds 3 semicolons: npk reads \
             comma-separated files (convert it, e.g. `tr ';' ','`)",
            semi.display()
        )
    );
}

#[test]
fn csv_values_beyond_the_raw_i32_range_fail_at_load_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.csv");
    let mut text = String::from("a,b,label\n");
    for i in 0..40 {
        text += &format!("{i},{},{}\n", i * 2, i % 2);
    }
    text += "1,1e30,1\n";
    std::fs::write(&big, text).unwrap();
    let model = dir.path().join("m.npk");
    assert_eq!(
        run_error(&[
            "train",
            "--data",
            big.to_str().unwrap(),
            "--out",
            model.to_str().unwrap()
        ]),
        format!(
            "{}: line 42, column \"b\": \"1e30\" is out of range: features must lie strictly \
             between -2^31 and 2^31 (the kernel model reads them as raw i32)",
            big.display()
        )
    );
}

#[test]
fn csv_control_bytes_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let nul = dir.path().join("nul.csv");
    std::fs::write(&nul, "a,label\n5.1\0,0\n").unwrap();
    assert_eq!(
        run_error(&["train", "--data", nul.to_str().unwrap()]),
        format!(
            "{}: line 2, column \"a\": \"5.1\\0\" is not a number",
            nul.display()
        )
    );
}

/// `npk train --data /dev/zero` under a 256 MiB address-space limit: refused at the line cap
/// (the loader used to grow until memory ran out).
#[test]
fn endless_csv_input_is_refused_in_bounded_memory() {
    let out = Command::new("sh")
        .args([
            "-c",
            "ulimit -v 262144 && exec \"$0\" train --data /dev/zero",
            env!("CARGO_BIN_EXE_npk"),
        ])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "npk: error: /dev/zero: line 1: longer than 131072 bytes (the cap on one CSV line)"
    );
}

#[test]
fn a_missing_namespace_names_its_cause_once() {
    let netns = format!("npk-msg-missing-{}", std::process::id());
    assert_eq!(
        run_error(&["client", "--netns", &netns, "--requests", "1"]),
        format!("entering network namespace {netns}: No such file or directory (os error 2)")
    );
}

#[test]
fn serve_without_a_server_kind_asks_for_one_of_them() {
    let out = npk(&["serve"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "error: the following required arguments were not provided:",
            "  <--kernel <IFACE>|--user>"
        ],
        "{stderr}"
    );
}

/// A client whose model has 16 inputs against a userspace server running a 4-input model:
/// the error says what the server answered, not a hex dump.
#[test]
fn client_against_another_model_prints_the_servers_status() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut server = Command::new(env!("CARGO_BIN_EXE_npk"))
        .args(["serve", "--user", "--bind", "127.0.0.1", "--port", &port])
        .args(["--inputs", "4", "--seconds", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(ready.starts_with("serving port"), "{ready}");
    let target = format!("127.0.0.1:{port}");
    let out = npk(&[
        "client",
        "--target",
        &target,
        "--inputs",
        "16",
        "--requests",
        "3",
    ]);
    server.kill().unwrap();
    server.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let said = "server answered WRONG_FEATURE_COUNT: it expects 4 features, this request has 16 \
                (expected OK)";
    assert!(
        stderr.starts_with("npk: error: 3 replies differ from the reference (first: request 0: ")
            && stderr.contains(said),
        "{stderr}"
    );
    assert!(
        stdout.contains(said) && !stdout.contains("expected ["),
        "{stdout}"
    );
}

/// Every subcommand shows an example, and every argument of every command has a description.
#[test]
fn every_subcommand_has_an_example_and_every_argument_a_description() {
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name()).trim().to_string();
        for arg in cmd.get_arguments() {
            let described = arg
                .get_help()
                .is_some_and(|h| !h.to_string().trim().is_empty());
            if !described && !["help", "version"].contains(&arg.get_id().as_str()) {
                missing.push(format!("{path}: --{} has no description", arg.get_id()));
            }
        }
        let leaf = cmd.get_subcommands().next().is_none();
        if leaf && path != "npk" {
            let example = cmd
                .get_after_help()
                .is_some_and(|h| h.to_string().contains("Example"));
            if !example {
                missing.push(format!("{path}: no example (after_help)"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &path, missing);
        }
    }
    let mut missing = Vec::new();
    walk(&npk::cli_command(), "", &mut missing);
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn detach_help_says_what_it_recovers() {
    let help = help_of("detach");
    assert!(help.contains("crash") && help.contains("pins"), "{help}");
}

/// An error whose text already shows its cause is not followed by the cause again (the
/// config file's read error said "No such file or directory (os error 2)" twice).
#[test]
fn an_os_error_is_named_once() {
    for (args, cause) in [
        (
            vec!["attach", "--config", "/nonexistent/npk.toml"],
            "No such file or directory (os error 2)",
        ),
        (
            vec!["attach", "--config", "/dev/null"],
            "is a character device, not a regular file",
        ),
    ] {
        let err = run_error(&args);
        assert_eq!(err.matches(cause).count(), 1, "{args:?}: {err}");
    }
}
