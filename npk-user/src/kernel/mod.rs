//! Loading npk's eBPF programs into the kernel.

/// The eBPF object built by build.rs (empty when the eBPF toolchain was missing).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/npk"));

/// Parses the embedded object, or explains how to get a real one.
pub fn load_object() -> anyhow::Result<aya::Ebpf> {
    anyhow::ensure!(
        !EBPF_OBJECT.is_empty(),
        "this npk was built without the eBPF toolchain; run scripts/setup.sh and rebuild"
    );
    Ok(aya::Ebpf::load(EBPF_OBJECT)?)
}
