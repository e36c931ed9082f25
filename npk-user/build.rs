//! Builds the eBPF object (crate npk-ebpf) with the pinned nightly and bpf-linker that
//! scripts/setup.sh installs, and leaves it in OUT_DIR for `include_bytes!`.
//!
//! We drive cargo ourselves rather than through aya-build to choose the BPF CPU version and to
//! print the inner build's output only when it fails. The object is built twice: for v4
//! (sign-extending loads, byte swaps, 32-bit jumps: kernels >= 6.6; 10-20% faster inference)
//! and for v3 (kernels from 5.1 on); the loader probes the kernel and picks one.
use std::{env, fs, path::PathBuf, process::Command};

/// Keep in sync with scripts/setup.sh.
const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";
/// BPF CPU versions built, each to OUT_DIR/npk-<version>.
const BPF_CPUS: [&str; 2] = ["v4", "v3"];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("..");
    for dir in ["npk-ebpf", "npk-common"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=PATH");

    let have_linker = Command::new("bpf-linker").arg("--version").output().is_ok();
    let have_nightly = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "rustc", "-V"])
        .output()
        .is_ok_and(|o| o.status.success());
    println!("cargo:rerun-if-env-changed=NPK_EBPF_STUB");
    if !(have_linker && have_nightly) {
        // A release build is a binary someone will run: without its eBPF object it can only
        // fail at load, so the build fails instead. Debug builds (cargo check, an editor) and
        // NPK_EBPF_STUB=1 get empty objects; loading one fails with a message that points at
        // scripts/setup.sh.
        let release = env::var("PROFILE").is_ok_and(|p| p == "release");
        let stub_asked = env::var("NPK_EBPF_STUB").is_ok_and(|v| v == "1");
        if release && !stub_asked {
            panic!(
                "bpf-linker or the {EBPF_TOOLCHAIN} toolchain is missing, so the eBPF object \
                 cannot be built: run scripts/setup.sh (or set NPK_EBPF_STUB=1 for a binary that \
                 cannot attach anything)"
            );
        }
        println!(
            "cargo:warning=bpf-linker or {EBPF_TOOLCHAIN} missing: the eBPF object is a stub; run scripts/setup.sh"
        );
        for cpu in BPF_CPUS {
            fs::write(out_dir.join(format!("npk-{cpu}")), b"").expect("write stub eBPF object");
        }
        return;
    }
    for cpu in BPF_CPUS {
        build(&root, &out_dir, cpu);
    }
}

/// Builds the object for BPF CPU `cpu` into OUT_DIR/npk-<cpu>.
fn build(root: &PathBuf, out_dir: &std::path::Path, cpu: &str) {
    let target_dir = out_dir.join(format!("ebpf-target-{cpu}"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
        format!("-Ctarget-cpu={cpu}"),
    ]
    .join("\x1f");
    let output = Command::new("rustup")
        .args([
            "run",
            EBPF_TOOLCHAIN,
            "cargo",
            "build",
            "--package",
            "npk-ebpf",
            "--bins",
        ])
        .args([
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(root)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo for the eBPF crate");
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.trim_start().starts_with("Compiling"))
            .collect();
        panic!(
            "building the eBPF object for BPF CPU {cpu} failed:\n{}",
            lines.join("\n")
        );
    }
    let built = target_dir.join("bpfel-unknown-none/release/npk");
    let object = out_dir.join(format!("npk-{cpu}"));
    fs::copy(&built, &object).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}
