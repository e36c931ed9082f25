//! npk's kernel programs. See npk_common for the contract they share with userspace.
#![no_std]
#![no_main]
// Inline asm for a compiler barrier (see model.rs); the eBPF crate builds with nightly.
#![feature(asm_experimental_arch)]
// `#[inline(always)]` on closures (see model::read_active's callers).
#![feature(stmt_expr_attributes)]
#![deny(clippy::float_arithmetic)]

mod classify;
mod egress;
mod frame;
mod loadgen;
mod maps;
mod model;
mod serve;

/// The `log` target of the kernel programs' records (aya-log), for RUST_LOG.
pub const LOG_TARGET: &str = "npk::kernel";

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use npk_common::{
    infer::{BOUNDED_WIDTHS, BoundedLoop},
    packet::parse,
};

use crate::{classify::Verdict, frame::HeaderBuf, model::BpfLoop};

/// Classifies every packet with the active model and acts per class.
#[xdp]
pub fn npk_classify(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    xdp_verdict(classify::classify::<BpfLoop>(
        HeaderBuf::from_xdp(&ctx),
        len,
    ))
}

/// The classifier as a TC (clsact) program, for egress and where XDP does not fit.
#[classifier]
pub fn npk_classify_tc(ctx: TcContext) -> i32 {
    let frame = HeaderBuf::from_skb(&ctx);
    tc_verdict(classify::classify::<BpfLoop>(frame, ctx.len() as u64))
}

/// Counts what this machine sends as replies for the classifier's features; passes every
/// frame. Attached at TC egress beside either classifier.
#[classifier]
pub fn npk_egress(ctx: TcContext) -> i32 {
    egress::observe(HeaderBuf::from_skb(&ctx));
    TC_ACT_OK
}

/// [`npk_classify`] and [`npk_classify_tc`] for kernels without `bpf_loop` (< 5.17) and
/// `bpf_xdp_load_bytes` (< 5.18), one pair per width in npk_common::infer::BOUNDED_WIDTHS:
/// the verifier walks every step of the model's loops, computed that wide, and XDP frames are
/// copied with direct packet access.
macro_rules! bounded_classifiers {
    ($($width:literal: $xdp:ident, $tc:ident;)*) => {$(
        #[xdp]
        pub fn $xdp(ctx: XdpContext) -> u32 {
            let len = (ctx.data_end() - ctx.data()) as u64;
            let frame = HeaderBuf::from_xdp_packet(&ctx);
            xdp_verdict(classify::classify::<BoundedLoop<$width>>(frame, len))
        }

        #[classifier]
        pub fn $tc(ctx: TcContext) -> i32 {
            let frame = HeaderBuf::from_skb(&ctx);
            tc_verdict(classify::classify::<BoundedLoop<$width>>(frame, ctx.len() as u64))
        }
    )*};
}

bounded_classifiers! {
    32: npk_bounded_32, npk_bnd_tc_32;
    64: npk_bounded_64, npk_bnd_tc_64;
    128: npk_bounded_128, npk_bnd_tc_128;
}
const _: () = assert!(matches!(BOUNDED_WIDTHS, [32, 64, 128]));

#[inline(always)]
fn xdp_verdict(v: Verdict) -> u32 {
    match v {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn tc_verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Pass => TC_ACT_OK,
        Verdict::Drop => TC_ACT_SHOT,
    }
}

/// Parses like the classifier and passes: the benchmark's baseline.
#[xdp]
pub fn npk_bare(ctx: XdpContext) -> u32 {
    let Some(frame) = HeaderBuf::from_xdp(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    // Fold every parsed field into the verdict so none of the parsing is optimised away.
    match parse(&frame) {
        Ok(h)
            if h.ip_len ^ h.payload_len ^ h.tcp_window ^ h.ip_header_len == u32::MAX
                && h.key.src_port ^ h.key.dst_port ^ h.icmp_type == u16::MAX
                && h.key.src[15] ^ h.key.dst[15] ^ h.ttl ^ h.tcp_flags == 0xff =>
        {
            xdp_action::XDP_DROP
        }
        _ => xdp_action::XDP_PASS,
    }
}

/// Answers npk inference requests (UDP, npk_common::service::wire) in place and sends the reply back
/// out of the interface; every other frame passes.
#[xdp]
pub fn npk_serve(ctx: XdpContext) -> u32 {
    serve::serve(&ctx)
}

/// The load generator of `npk bench serve --generator kernel`, run by BPF_PROG_TEST_RUN in
/// live-frames mode: sends the next prebuilt request (XDP_TX).
#[xdp]
pub fn npk_loadgen(ctx: XdpContext) -> u32 {
    loadgen::generate(&ctx)
}

/// Counts and checks the replies to npk_loadgen's requests and drops them; passes the rest.
#[xdp]
pub fn npk_replies(ctx: XdpContext) -> u32 {
    loadgen::count_reply(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
