//! The kernel programs' log: the rare events they report through aya-log (a model version
//! first seen on a CPU, a swap conflict, a configuration change), read from the object's
//! `AYA_LOGS` ring buffer and handed to the `log` crate (shown on stderr per `RUST_LOG`, see
//! [`init_stderr_logger`]).
//!
//! Only a foreground npk (`npk attach` without `--pin`, `npk serve --kernel`) reads the ring:
//! with nobody reading, the kernel's reservations fail once it is full and the records are
//! dropped; the programs carry on unchanged.

use aya::Ebpf;
use aya_log::EbpfLogger;

/// The ring buffer aya-log-ebpf declares in the object (aya-log keeps its name private).
#[cfg(test)]
pub(super) const MAP_NAME: &str = "AYA_LOGS";

#[derive(Debug, thiserror::Error)]
#[error("reading the kernel programs' log (aya-log's AYA_LOGS ring buffer)")]
pub struct KernelLogError(#[source] aya_log::Error);

/// The log records of one loaded object, forwarded on [`KernelLog::forward`].
pub struct KernelLog(EbpfLogger<&'static dyn log::Log>);

impl KernelLog {
    /// Takes the log ring out of `ebpf` (after its programs are loaded).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, KernelLogError> {
        EbpfLogger::init(ebpf).map(Self).map_err(KernelLogError)
    }

    /// Hands every record written since the last call to the logger; never blocks.
    pub fn forward(&mut self) {
        self.0.flush();
    }
}

/// Logs to stderr at the level `RUST_LOG` asks for (default: warnings and errors; the kernel
/// programs' records are `info`, target `npk::kernel`).
pub fn init_stderr_logger() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
}
