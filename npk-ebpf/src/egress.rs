//! The egress side of the classifier: what this machine sends back, counted for the reply
//! features (npk_common::packet's features 26-27).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use npk_common::{
    maps::FLAG_RECORD_LAST,
    packet::{observe_reply, parse},
};

use crate::{
    frame::HeaderBuf,
    maps::{CONFIG, FLOWS, HOSTS, LAST},
};

/// Counts the outgoing frame as a reply to the flow it answers and to the host it goes to,
/// where the classifier has seen them; creates nothing. Uses the per-CPU header buffer of the
/// ingress path: the two never run nested on one CPU (TC egress runs with bottom halves off,
/// and XDP or TC ingress returns before the stack answers a packet).
#[inline(always)]
pub fn observe(frame: Option<HeaderBuf>) {
    let Some(frame) = frame else {
        return;
    };
    let Ok(h) = parse(&frame) else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let flow = FLOWS.get_ptr_mut(&h.key.reversed());
    let host = HOSTS.get_ptr_mut(&h.key.dst);
    // SAFETY: map values; plain read-modify-writes raced like the ingress path's (see
    // classify::flow_stage): a reply counted short at worst.
    unsafe { observe_reply(flow.map(|f| &mut *f), host.map(|h| &mut *h), now) };
    if CONFIG
        .get(0)
        .is_some_and(|c| c.flags & FLAG_RECORD_LAST != 0)
        && let Some(last) = LAST.get_ptr_mut(0)
    {
        // SAFETY: map value; only `npk verify` reads it, between test runs.
        unsafe { (*last).reply_ns = now };
    }
}
