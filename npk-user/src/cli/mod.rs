//! The `npk` command line: one module per subcommand, doc comments are the help text.

use clap::{Parser, Subcommand};

pub mod train;

#[derive(Debug, Parser)]
#[command(name = "npk", version, about = "Neural packet kernel: train an MLP, quantize it, run it in the kernel")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Train(train::TrainArgs),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Train(args) => train::run(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
