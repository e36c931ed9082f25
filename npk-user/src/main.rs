use std::{
    io::{self, Write},
    process::ExitCode,
};

use clap::Parser;
use npk::output::ConsoleError;

/// Rust ignores SIGPIPE, so a closed stdout is a write error: commands report it as a
/// [`ConsoleError`], and a reader that went away (`npk ... | head`) ends npk quietly with
/// success, its work (a model written) done. Any other stdout error (`> /dev/full`) is one.
fn main() -> ExitCode {
    let cli = match npk::cli::Cli::try_parse() {
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
        Err(e) => fail(format_args!("{e:#}")),
    }
}

fn fail(message: std::fmt::Arguments) -> ExitCode {
    // Nothing is left to tell if stderr is gone too.
    let _ = writeln!(io::stderr(), "npk: error: {message}");
    ExitCode::FAILURE
}
