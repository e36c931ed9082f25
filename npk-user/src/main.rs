use std::process::ExitCode;

fn main() -> ExitCode {
    npk::run_cli()
}
