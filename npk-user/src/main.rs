use std::process::ExitCode;

fn main() -> ExitCode {
    npk::kernel::log::init_stderr_logger();
    npk::run_cli()
}
