//! The `npk` command line: one module per subcommand, doc comments are the help text.

mod attach;
mod bench;
mod capture;
mod cleanup;
mod client;
mod demo;
mod docs;
mod eval;
mod events;
mod export;
mod exporter;
mod features;
mod r#gen;
mod import;
mod inspect;
mod serve;
mod status;
mod train;
mod verify;

use std::{
    io::{self, Write},
    process::ExitCode,
};

use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::ConsoleError;

#[derive(Debug, Parser)]
#[command(
    name = "npk",
    version,
    about = "Neural packet kernel: train an MLP, quantize it, run it in the kernel"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an MLP on a CSV file, quantize it to int8 and save a model file.
    #[command(
        after_help = "Example:\n  npk train --data data/iris.csv --hidden 16,16 --epochs 100 --out iris.npk"
    )]
    Train(train::TrainArgs),
    /// Score a model file on a CSV file: float, quantized and their agreement.
    #[command(after_help = "Example:\n  npk eval --model iris.npk --data data/iris.csv")]
    Eval(eval::EvalArgs),
    /// Attach the classifier with a model to an interface.
    #[command(
        after_help = "Example:\n  sudo npk attach --iface eth0 --model packets.npk --action 1=drop --pin"
    )]
    Attach(attach::AttachArgs),
    /// Remove npk's classifier from an interface: the program and maps pinned under
    /// /sys/fs/bpf/npk/IFACE by `npk attach --pin`, or left behind by an attach that crashed
    /// or was killed (then `npk attach` would say "already attached"). Only npk's own pins
    /// are removed.
    #[command(after_help = "Example:\n  sudo npk detach --iface eth0")]
    Detach(attach::DetachArgs),
    /// Replace the model of a running classifier atomically, without reloading it.
    #[command(after_help = "Example:\n  sudo npk push --iface eth0 --model packets-v2.npk")]
    Push(attach::PushArgs),
    /// Per-class counters, drops, pps and ns per packet of an attached classifier.
    #[command(after_help = "Example:\n  sudo npk stats --iface eth0 --watch")]
    Stats(attach::StatsArgs),
    /// Stream what the classifier decided for the packets it sampled: drops (by default),
    /// `sample` classes, unsure drops; time, addresses, ports, class, margin, action.
    #[command(
        after_help = "Example:\n  sudo npk events --iface eth0\n  sudo npk events --json | jq ."
    )]
    Events(events::EventsArgs),
    /// What npk runs on this host: attachments, kernel servers, stale pins.
    #[command(after_help = "Example:\n  sudo npk status\n  sudo npk status --json")]
    Status(status::StatusArgs),
    /// Remove what killed npk commands left behind (namespaces, veths, stale pins), only that.
    #[command(after_help = "Example:\n  sudo npk cleanup --dry-run\n  sudo npk cleanup")]
    Cleanup(cleanup::CleanupArgs),
    /// Serve Prometheus metrics (/metrics) of every npk attachment and kernel server here.
    #[command(
        after_help = "Example:\n  sudo npk exporter\n  sudo npk exporter --listen 0.0.0.0:9595"
    )]
    Exporter(exporter::ExporterArgs),
    /// Benchmarks that print numbers.
    Bench(bench::BenchArgs),
    /// Check the kernel classifier against the userspace reference on generated frames.
    #[command(after_help = "Example:\n  sudo npk verify --hidden 32,32 --packets 100000 --json")]
    Verify(verify::VerifyArgs),
    /// Show a model file: layers, shapes, scales, requantization, parameter and MAC counts.
    #[command(after_help = "Example:\n  npk inspect iris.npk")]
    Inspect(inspect::InspectArgs),
    /// Import an ONNX MLP classifier trained elsewhere, quantize it to int8, save a model file.
    #[command(
        after_help = "Example:\n  npk import iris.onnx --calibrate data/iris.csv --out iris.npk"
    )]
    Import(import::ImportArgs),
    /// Write a model file's int8 model as a float ONNX graph (dequantized weights).
    #[command(after_help = "Example:\n  npk export iris.npk --onnx iris-npk.onnx")]
    Export(export::ExportArgs),
    /// Turn a pcap/pcapng capture into labelled packet features (CSV) for `npk train`.
    #[command(
        after_help = "Example:\n  npk features --pcap benign.pcap --label 0 --out benign.csv"
    )]
    Features(features::FeaturesArgs),
    /// Record live packets' features, as the kernel computes them, into a labelled CSV.
    #[command(
        after_help = "Example:\n  sudo npk capture --iface eth0 --label 1 --seconds 30 --out attack.csv"
    )]
    Capture(capture::CaptureArgs),
    /// Generate labelled benign and attack traffic in a new namespace, recorded into a CSV.
    #[command(after_help = "Example:\n  sudo npk gen --seconds 10 --out traffic.csv")]
    Gen(r#gen::GenArgs),
    /// The whole pipeline on real-tool (or generated) traffic in throwaway namespaces.
    #[command(after_help = "Example:\n  sudo npk demo --json")]
    Demo(demo::DemoArgs),
    /// Answer inference requests over UDP, in the kernel (XDP) or from userspace.
    #[command(
        after_help = "Example:\n  sudo npk serve --kernel eth0 --model iris.npk\n  npk serve --user --port 7878 --model iris.npk"
    )]
    Serve(serve::ServeArgs),
    /// Send inference requests to `npk serve` and check every reply.
    #[command(
        after_help = "Example:\n  npk client --target 10.0.0.2:7878 --model iris.npk --requests 100000"
    )]
    Client(client::ClientArgs),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  npk completions bash > /etc/bash_completion.d/npk")]
    Completions(docs::CompletionsArgs),
    /// Write man pages for npk and each of its commands into a directory.
    #[command(after_help = "Example:\n  npk man --dir /usr/local/share/man/man1")]
    Man(docs::ManArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Train(args) => train::run(args),
            Command::Eval(args) => eval::run(args),
            Command::Attach(a) => attach::run_attach(a),
            Command::Detach(a) => attach::run_detach(a),
            Command::Push(a) => attach::run_push(a),
            Command::Stats(a) => attach::run_stats(a),
            Command::Status(a) => status::run(a),
            Command::Events(a) => events::run(a),
            Command::Completions(a) => docs::completions(a),
            Command::Man(a) => docs::man(a),
            Command::Cleanup(a) => cleanup::run(a),
            Command::Exporter(a) => exporter::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Verify(a) => verify::run(a),
            Command::Inspect(a) => inspect::run(a),
            Command::Import(a) => import::run(a),
            Command::Export(a) => export::run(a),
            Command::Features(a) => features::run(a),
            Command::Capture(a) => capture::run(a),
            Command::Gen(a) => r#gen::run(a),
            Command::Demo(a) => demo::run(a),
            Command::Serve(a) => serve::run(a),
            Command::Client(a) => client::run(a),
        }
    }
}

/// The `npk` binary: parse the arguments, run the subcommand, report its error.
///
/// Rust ignores SIGPIPE, so a closed stdout is a write error: commands report it as a
/// [`ConsoleError`], and a reader that went away (`npk ... | head`) ends npk quietly with
/// success, its work (a model written) done. Any other stdout error (`> /dev/full`) is one.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version and usage errors; clap's own exit ignores a failed write.
        Err(e) => {
            return match e.print().and_then(|()| io::stdout().flush()) {
                Ok(()) => ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1)),
                Err(write) => fail(format_args!("writing the help text: {write}")),
            };
        }
    };
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<ConsoleError>()
                    .is_some_and(ConsoleError::is_broken_pipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("{}", crate::output::error_text(e.as_ref()))),
    }
}

fn fail(message: std::fmt::Arguments) -> ExitCode {
    // Nothing is left to tell if stderr is gone too.
    let _ = writeln!(io::stderr(), "npk: error: {message}");
    ExitCode::FAILURE
}

/// The command tree (its help text), for tests that walk it.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Hidden layer widths as `npk train` takes them, parsed from `16,16` (or `none`) when the flag
/// is read; the widths are checked by what uses them (the kernel's limits only with --out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widths(pub Vec<usize>);

impl std::str::FromStr for Widths {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        crate::train::parse_hidden(s)
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

/// Batch sizes, parsed from `3,10,256`: at least one, none 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSizes(pub Vec<usize>);

impl std::str::FromStr for BatchSizes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let sizes = crate::train::parse_hidden(s)
            .ok()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("'{s}': expected sizes like 3,10,256"))?;
        if sizes.contains(&0) {
            return Err(format!("'{s}': batch size 0, must be at least 1"));
        }
        Ok(Self(sizes))
    }
}

/// Hidden layer widths, parsed from `16,16` and checked against the kernel's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hidden(pub Vec<usize>);

impl std::str::FromStr for Hidden {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let widths = crate::train::parse_hidden(s).map_err(|e| e.to_string())?;
        npk_common::model::check_hidden(&widths).map_err(|e| e.to_string())?;
        Ok(Self(widths))
    }
}

/// A bar of `seconds` for work that runs that long (capture, gen), redrawn every 200 ms so
/// that its clock moves; on a terminal only, as [`progress_bar`].
pub fn seconds_bar(seconds: u64, quiet: bool) -> ProgressBar {
    let pb = progress_bar(seconds, quiet);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} s {msg}")
            .expect("static template"),
    );
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

/// A bar on a terminal, nothing in --json mode or when piped.
pub fn progress_bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .expect("static template"),
    );
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    /// Scripts can read every command's result: each command (and each bench) takes --json.
    #[test]
    fn every_command_takes_json() {
        fn leaves(c: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
            for sub in c.get_subcommands() {
                leaves(sub, format!("{path} {}", sub.get_name()), out);
            }
            if c.get_subcommands().next().is_none() {
                out.push((path, c.clone()));
            }
        }
        let mut commands = Vec::new();
        leaves(&Cli::command(), "npk".into(), &mut commands);
        let without: Vec<&str> = commands
            .iter()
            .filter(|(_, c)| !c.get_arguments().any(|a| a.get_id() == "json"))
            .map(|(path, _)| path.as_str())
            .collect();
        assert!(without.is_empty(), "no --json: {without:?}");
    }
}
