//! Builds the eBPF object with the pinned nightly and bpf-linker (scripts/setup.sh installs
//! both) and leaves it in OUT_DIR for `include_bytes!`.
use std::{env, fs, path::PathBuf, process::Command};

/// Keep in sync with scripts/setup.sh.
const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("npk");
    let have_linker = Command::new("bpf-linker").arg("--version").output().is_ok();
    let have_nightly = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "rustc", "-V"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(have_linker && have_nightly) {
        // An empty object keeps `cargo check`/clippy working anywhere; loading it fails with a
        // message that points at scripts/setup.sh.
        println!(
            "cargo:warning=bpf-linker or {EBPF_TOOLCHAIN} missing: the eBPF object is a stub; run scripts/setup.sh"
        );
        fs::write(&object, b"").expect("write stub eBPF object");
        return;
    }
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest_dir.parent().unwrap().join("npk-ebpf");
    let common_dir = manifest_dir.parent().unwrap().join("npk-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let package = aya_build::Package {
        name: "npk-ebpf",
        root_dir: ebpf_dir.to_str().unwrap(),
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(EBPF_TOOLCHAIN)) {
        panic!("building the eBPF object failed (see the warnings above): {e:#}");
    }
}
