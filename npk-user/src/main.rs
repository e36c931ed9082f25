use clap::Parser;

fn main() -> std::process::ExitCode {
    match npk::cli::Cli::parse().run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("npk: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
