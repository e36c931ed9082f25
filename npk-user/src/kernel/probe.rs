//! What the running kernel offers npk's programs, probed once per process: the BPF CPU
//! version (v4 instructions: >= 6.6), the `bpf_loop` helper (>= 5.17) and
//! `bpf_xdp_load_bytes` (>= 5.18), TCX links (>= 6.6). The loader picks the object and the
//! programs from it.

use std::sync::OnceLock;

use aya::{
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported},
    util::KernelVersion,
};

/// The probed kernel.
#[derive(Clone, Debug)]
pub struct KernelFeatures {
    /// `uname -r`, for messages.
    pub release: String,
    /// BPF CPU v4 instructions (sign-extending loads, byte swaps).
    pub cpu_v4: bool,
    /// The `bpf_loop` helper from XDP programs.
    pub bpf_loop: bool,
    /// `bpf_xdp_load_bytes`/`bpf_xdp_store_bytes` (the inference server and the generator).
    pub xdp_load_bytes: bool,
    /// TCX links, which npk's TC attachment uses: the version test aya makes to choose
    /// between TCX and netlink.
    pub tcx: bool,
}

/// The running kernel's features (probed on first use; needs the privileges loading does).
pub fn kernel() -> &'static KernelFeatures {
    static FEATURES: OnceLock<KernelFeatures> = OnceLock::new();
    FEATURES.get_or_init(|| {
        let helper = |h| is_helper_supported(ProgramType::Xdp, h).unwrap_or(false);
        KernelFeatures {
            release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|r| r.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpu_v4: cpu_v4_supported(),
            bpf_loop: helper(BpfHelper::BPF_FUNC_loop),
            xdp_load_bytes: helper(BpfHelper::BPF_FUNC_xdp_load_bytes),
            tcx: KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)),
        }
    })
}

/// Loads `r0 = 0; r0 = bswap16 r0; exit` as a socket filter: the unconditional byte swap
/// (opcode 0xd7) exists only in BPF CPU v4, which the verifier accepts from 6.6 on.
fn cpu_v4_supported() -> bool {
    /// One eBPF instruction: opcode, registers (dst low nibble, src high), offset, immediate.
    const fn insn(code: u8, imm: i32) -> [u8; 8] {
        let i = imm.to_le_bytes();
        [code, 0, 0, 0, i[0], i[1], i[2], i[3]]
    }
    const MOV64_IMM: u8 = 0xb7;
    const BSWAP: u8 = 0xd7; // BPF_ALU64 | BPF_END | BPF_TO_LE
    const EXIT: u8 = 0x95;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    let insns = [insn(MOV64_IMM, 0), insn(BSWAP, 16), insn(EXIT, 0)];
    let license = c"GPL";
    /// The leading fields of `union bpf_attr` for BPF_PROG_LOAD; the rest stays zero.
    #[repr(C)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        zero: [u8; 104],
    }
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        zero: [0; 104],
    };
    // SAFETY: BPF_PROG_LOAD reads `attr` (its size passed) and the memory it points to, all
    // alive for the call; a returned descriptor is ours to close.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            size_of::<ProgLoadAttr>(),
        );
        if fd < 0 {
            return false;
        }
        libc::close(fd as libc::c_int);
    }
    true
}
