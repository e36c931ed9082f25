//! `npk completions` and `npk man`: shell completions and man pages generated from the same
//! clap definitions as the help, so that they cannot drift from it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::{outln, output::OutputPath};

use super::Cli;

/// Print the completion script of a shell for npk.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
    /// Print one JSON object, {"shell": ..., "script": ...}, instead of the bare script.
    #[arg(long)]
    json: bool,
}

/// Write man pages for npk and each of its commands (npk.1, npk-attach.1, ...).
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory the pages go to (it must exist), e.g. /usr/local/share/man/man1.
    #[arg(long)]
    dir: PathBuf,
    /// Print the pages written as one JSON object: {"dir": ..., "pages": [...]}.
    #[arg(long)]
    json: bool,
}

pub fn completions(args: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "npk", &mut script);
    let script = String::from_utf8(script).context("the completion script is not UTF-8")?;
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"shell": args.shell.to_string(), "script": script})
        )?;
    } else {
        outln!("{}", script.trim_end())?;
    }
    Ok(())
}

pub fn man(args: ManArgs) -> Result<()> {
    let npk = Cli::command().name("npk");
    let mut pages = vec![("npk".to_string(), npk.clone())];
    for sub in npk.get_subcommands() {
        let name = format!("npk-{}", sub.get_name());
        let command = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("npk {}", sub.get_name()));
        pages.push((name, command));
    }
    // Every path is checked before anything is written.
    let outputs = pages
        .iter()
        .map(|(name, _)| OutputPath::check(&args.dir.join(format!("{name}.1")), &[]))
        .collect::<Result<Vec<_>, _>>()?;
    let mut written = Vec::new();
    for ((name, command), out) in pages.into_iter().zip(&outputs) {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .title(name.to_uppercase())
            .render(&mut page)?;
        out.write_all(&page)?;
        written.push(format!("{name}.1"));
    }
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"dir": args.dir.display().to_string(), "pages": written})
        )?;
    } else {
        outln!(
            "{} man pages written to {}",
            written.len(),
            args.dir.display()
        )?;
    }
    Ok(())
}
