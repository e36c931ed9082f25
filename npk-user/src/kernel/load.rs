//! The one loader of npk's eBPF object, for the classifier, the kernel server and the load
//! generator: privileges checked up front, the object for this kernel picked (BPF CPU v4 or
//! v3, see [`probe`](super::probe)), programs verified with the verifier's reason kept.

use aya::{Ebpf, EbpfError, EbpfLoader, VerifierLogLevel, programs::Program};

use super::probe::kernel;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Privilege(#[from] PrivilegeError),
    #[error("this npk was built without the eBPF toolchain; run scripts/setup.sh and rebuild")]
    NoObject,
    #[error(
        "{what} ({program}) needs the bpf_xdp_load_bytes and bpf_loop helpers (Linux 5.18 and later); this \
         kernel ({release}) lacks them. The classifier (npk attach, npk verify) runs here."
    )]
    NeedsXdpLoadBytes {
        what: &'static str,
        program: &'static str,
        release: String,
    },
    #[error("loading npk's eBPF object")]
    Object(#[source] Box<EbpfError>),
    #[error("program {0} missing")]
    MissingProgram(String),
    #[error("program {name} is neither XDP nor TC")]
    ProgramType { name: String },
    /// `what` says which program and, where it matters, why this one.
    #[error("{what}")]
    Refused {
        what: String,
        #[source]
        source: VerifierError,
    },
}

/// Why BPF_PROG_LOAD failed: the system call's error and the verifier log's tail.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("BPF_PROG_LOAD failed: {io_error}\nverifier log (last lines):\n{tail}")]
    Log {
        io_error: std::io::Error,
        tail: String,
    },
    #[error(transparent)]
    Other(aya::programs::ProgramError),
}

/// The eBPF objects built by build.rs (empty when the eBPF toolchain was missing): for BPF
/// CPU v4 (kernels >= 6.6) and v3 (the same programs without v4 instructions).
static EBPF_OBJECT_V4: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/npk-v4"));
static EBPF_OBJECT_V3: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/npk-v3"));

/// The object for the running kernel: v4 where it verifies (10-20% faster inference), else v3.
fn ebpf_object() -> Result<&'static [u8], LoadError> {
    let object = if kernel().cpu_v4 {
        EBPF_OBJECT_V4
    } else {
        EBPF_OBJECT_V3
    };
    if object.is_empty() {
        return Err(LoadError::NoObject);
    }
    Ok(object)
}

/// The XDP programs of the inference server and the load generator use
/// `bpf_xdp_load_bytes`/`bpf_xdp_store_bytes` (and `bpf_loop`, and live-frame test runs):
/// Linux 5.18 and later. `what` and `program` name the program for the message.
pub fn require_xdp_load_bytes(what: &'static str, program: &'static str) -> Result<(), LoadError> {
    // The probe needs the privileges: without them it would report the helpers missing.
    check_privileges()?;
    let k = kernel();
    if !(k.xdp_load_bytes && k.bpf_loop) {
        return Err(LoadError::NeedsXdpLoadBytes {
            what,
            program,
            release: k.release.clone(),
        });
    }
    Ok(())
}

/// npk's eBPF object for this kernel, its maps created, no program verified yet.
pub fn load_object() -> Result<Ebpf, LoadError> {
    check_privileges()?;
    // The verdict and statistics only, not the walk: aya loads a refused program again
    // with the log on, and a long program's walk outgrows aya's largest buffer (16 MiB;
    // the kernel then answers ENOSPC instead of its verdict) after one more walk per
    // tenfold buffer (minutes each under emulation).
    EbpfLoader::new()
        .verifier_log_level(VerifierLogLevel::STATS)
        .load(ebpf_object()?)
        .map_err(|e| LoadError::Object(Box::new(e)))
}

/// Verifies program `name` of `ebpf` (XDP or TC); `refused` says what was refused if the
/// kernel refuses it.
pub fn load_program(
    ebpf: &mut Ebpf,
    name: &str,
    refused: impl FnOnce() -> String,
) -> Result<(), LoadError> {
    let loaded = match ebpf
        .program_mut(name)
        .ok_or_else(|| LoadError::MissingProgram(name.into()))?
    {
        Program::Xdp(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        _ => return Err(LoadError::ProgramType { name: name.into() }),
    };
    loaded.map_err(|e| LoadError::Refused {
        what: refused(),
        source: verifier_error(e),
    })
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "npk needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN to load and attach its eBPF programs \
         and lacks {missing}: run it as root (sudo) or give it those capabilities (e.g. \
         setpriv --inh-caps +bpf,+perfmon,+net_admin --ambient-caps +bpf,+perfmon,+net_admin)"
    )]
    Missing { missing: String },
    #[error("reading the capabilities of this process from /proc/self/status: {0}")]
    Status(#[source] std::io::Error),
}

/// The effective capability set of this process (the CapEff line of /proc/self/status).
fn effective_capabilities() -> Result<u64, PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(PrivilegeError::Status)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| {
            PrivilegeError::Status(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no CapEff line",
            ))
        })
}

/// Whether this process has CAP_SYS_ADMIN (which the kernel's lists of programs and links
/// ask for).
pub(crate) fn has_sys_admin() -> bool {
    effective_capabilities().is_ok_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF memory to it, and explains a
/// missing privilege up front instead of an EPERM deep inside a load: loading XDP and TC
/// programs takes CAP_BPF and CAP_NET_ADMIN, and npk's programs pass the verifier only with
/// CAP_PERFMON too (without it the verifier refuses pointer arithmetic on packet and map
/// pointers); CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON. Root is not needed.
fn check_privileges() -> Result<(), PrivilegeError> {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid rlimit. Failing (no CAP_SYS_RESOURCE) is fine on
    // kernels that account BPF memory to the cgroup (>= 5.11).
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    let caps = effective_capabilities()?;
    let has = |cap: u32| caps & (1 << cap) != 0;
    let mut missing = Vec::new();
    for (cap, name) in [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")] {
        if !has(cap) && !has(CAP_SYS_ADMIN) {
            missing.push(name);
        }
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !missing.is_empty() {
        return Err(PrivilegeError::Missing {
            missing: missing.join(", "),
        });
    }
    Ok(())
}

/// The verifier's log can be megabytes: keep its tail, where the reason is.
fn verifier_error(e: aya::programs::ProgramError) -> VerifierError {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            // aya's own message carries the whole log: say the syscall's error and the tail.
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n");
            VerifierError::Log { io_error, tail }
        }
        other => VerifierError::Other(other),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use npk_common::maps::{MAP_NAMES, PROGRAM_NAMES};

    use super::{EBPF_OBJECT_V3, EBPF_OBJECT_V4};

    /// Both built objects name their maps and programs exactly as npk_common does: renaming
    /// one on either side, or adding one without a constant, fails here.
    #[test]
    fn the_objects_name_maps_and_programs_as_npk_common_does() {
        for (cpu, object) in [("v4", EBPF_OBJECT_V4), ("v3", EBPF_OBJECT_V3)] {
            assert!(
                !object.is_empty(),
                "the {cpu} object is a stub: built without the eBPF toolchain (scripts/setup.sh)"
            );
            let parsed = aya_obj::Object::parse(object)
                .unwrap_or_else(|e| panic!("parsing the {cpu} object: {e}"));
            // Sections of global data (.rodata, .bss) are maps to aya too; npk names none.
            let maps: BTreeSet<&str> = (parsed.maps.keys().map(String::as_str))
                .filter(|name| !name.starts_with('.'))
                .collect();
            let programs: BTreeSet<&str> = parsed.programs.keys().map(String::as_str).collect();
            // And aya-log's ring buffer (npk-ebpf's log records).
            let expected =
                BTreeSet::from_iter(MAP_NAMES.into_iter().chain([super::super::log::MAP_NAME]));
            assert_eq!(maps, expected, "maps of the {cpu} object");
            assert_eq!(
                programs,
                BTreeSet::from(PROGRAM_NAMES),
                "programs of the {cpu} object"
            );
        }
    }
}
