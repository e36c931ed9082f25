//! Running the active model: the `bpf_loop` driver for npk_common's `infer` and the read side of
//! the double-buffered hot swap (see npk_common::maps).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_loop;
use npk_common::{
    infer::{BoundedLoop, NeuronLoop, Scratch, infer, required_width},
    maps::NO_MODEL,
    model::Model,
};

use crate::maps::{ACTIVE, MODELS, PACKET, SCRATCH, SLOT_SEQ};

/// Runs each neuron as one `bpf_loop` iteration: the verifier checks the body once, whatever
/// the layer width.
pub struct BpfLoop;

impl NeuronLoop for BpfLoop {
    #[inline(always)]
    fn run<F: FnMut(u32)>(&mut self, n: u32, mut body: F) {
        extern "C" fn step<F: FnMut(u32)>(index: u64, ctx: *mut c_void) -> i64 {
            // SAFETY: ctx is the `&mut F` passed to bpf_loop below, alive for the whole call.
            let body = unsafe { &mut *(ctx as *mut F) };
            body(index as u32);
            0
        }
        // SAFETY: the helper calls `step` n times with our context; n <= MAX_WIDTH.
        unsafe {
            bpf_loop(
                n,
                step::<F> as *const () as *mut c_void,
                &mut body as *mut F as *mut c_void,
                0,
            );
        }
    }
}

/// Keeps the compiler from moving memory accesses across this point (BPF has no fence
/// instruction; the JIT and x86 keep loads in program order).
#[inline(always)]
fn compiler_barrier() {
    // SAFETY: an empty asm block without `nomem` is a compiler-only memory barrier.
    unsafe { core::arch::asm!("", options(nostack, preserves_flags)) };
}

/// Hides a value's origin from LLVM so that it cannot fold range checks away.
#[inline(always)]
pub fn opaque(x: usize) -> usize {
    // A stack round trip: LLVM forgets the value, the verifier keeps its bounds.
    core::hint::black_box(x)
}

/// `n` (in 1..=MAX, MAX a power of two) restated as `((n - 1) & (MAX - 1)) + 1`, unchanged,
/// for a helper's length argument (`bpf_xdp_load_bytes` and the like refuse 0 and need the
/// largest value). LLVM folds the callers' own range checks into forms the verifier cannot
/// follow, or drops a mask it proves redundant; on an [`opaque`] value the mask and the add
/// survive, and the verifier reads 1..=MAX off them.
#[inline(always)]
pub fn bounded_len<const MAX: usize>(n: usize) -> usize {
    const { assert!(MAX.is_power_of_two()) };
    (opaque(n).wrapping_sub(1) & (MAX - 1)) + 1
}

pub enum ModelError {
    /// No model, or one wider than the loop driver runs (userspace refuses to push those).
    NoModel,
    /// The slot was rewritten under every attempt.
    SwapConflict,
}

/// The active model, or `None` before the first push.
#[inline(always)]
pub fn active_model() -> Option<(u32, &'static Model)> {
    let slot = *ACTIVE.get(0)?;
    if slot == NO_MODEL {
        return None;
    }
    let slot = slot & 1;
    Some((slot, MODELS.get(slot)?))
}

/// The model of `version` in either slot: the active one, or the previous one while a push has
/// just made another active (its slot is rewritten only by the push after).
#[inline(always)]
pub fn model_of_version(version: u32) -> Option<&'static Model> {
    let (slot, active) = active_model()?;
    if active.header.model_version == version {
        return Some(active);
    }
    MODELS
        .get(slot ^ 1)
        .filter(|m| m.header.model_version == version)
}

/// Attempts of [`read_active`] (and of the classifier's inference, see classify.rs).
pub const READ_ATTEMPTS: usize = 3;

/// The seqlock read: runs `read` on the active model between two reads of its slot's
/// sequence number and returns its result if the number was even (no push writing the slot)
/// and did not move (no push rewrote it meanwhile): otherwise the result may mix two models
/// and is thrown away. [`READ_ATTEMPTS`] attempts, each failed one counted in `retries`.
#[inline(always)]
pub fn read_active<T>(
    retries: &mut u64,
    mut read: impl FnMut(&'static Model) -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    for _ in 0..READ_ATTEMPTS {
        if let Some(value) = read_once(&mut read)? {
            return Ok(value);
        }
        *retries += 1;
    }
    Err(ModelError::SwapConflict)
}

/// One attempt of [`read_active`]: `None` when a push raced it.
#[inline(always)]
fn read_once<T>(
    read: &mut impl FnMut(&'static Model) -> Result<T, ModelError>,
) -> Result<Option<T>, ModelError> {
    let Some((slot, model)) = active_model() else {
        return Err(ModelError::NoModel);
    };
    let Some(seq) = SLOT_SEQ.get_ptr(slot) else {
        return Err(ModelError::NoModel);
    };
    // SAFETY: seq points into the map value; volatile keeps the two reads where they are.
    let before = unsafe { core::ptr::read_volatile(seq) };
    compiler_barrier();
    if before & 1 == 0 {
        let value = read(model)?;
        compiler_barrier();
        let after = unsafe { core::ptr::read_volatile(seq) };
        if before == after {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Classifies `scratch.features` with the active model, its loops driven by `looper`, under
/// [`read_active`]. Returns (class, model version); retries caused by concurrent pushes are
/// counted in `retries`.
#[inline(always)]
pub fn classify<L: NeuronLoop>(
    scratch: &mut Scratch,
    retries: &mut u64,
    looper: &mut L,
) -> Result<(u32, u32), ModelError> {
    // Inlined like the loop around it: a closure of its own would need the loop state's
    // stack frame on top of the caller's.
    read_active(
        retries,
        #[inline(always)]
        |model| run_model(model, scratch, looper),
    )
}

/// The inference of one seqlock attempt: (class, model version).
#[inline(always)]
fn run_model<L: NeuronLoop>(
    model: &Model,
    scratch: &mut Scratch,
    looper: &mut L,
) -> Result<(u32, u32), ModelError> {
    if let Some(width) = L::FIXED_WIDTH
        && required_width(model) > width
    {
        return Err(ModelError::NoModel);
    }
    let class = infer(model, scratch, looper);
    // SAFETY: a map value; volatile keeps the read inside the sequence window.
    let version = unsafe { core::ptr::read_volatile(&model.header.model_version) };
    Ok((class, version))
}

/// [`InferStage::infer`] results.
pub const INFERRED: u32 = 0;
pub const NO_MODEL_LOADED: u32 = 1;
pub const RACED: u32 = 2;

/// A loop driver's stages as global functions of their own (see [`stages`]).
pub trait InferStage: NeuronLoop {
    /// One attempt of [`read_active`] running the model on the per-CPU scratch's features:
    /// on [`INFERRED`] the class and the model version are in the per-CPU `PacketScratch`
    /// (`class`, `version`); [`RACED`] when a push raced it (the caller retries, up to
    /// [`READ_ATTEMPTS`] attempts, so that the verifier walks the inference once, not once
    /// per attempt), [`NO_MODEL_LOADED`] when there is no model to run.
    fn infer() -> u32;
    /// [`crate::classify::flow_stage`] with this driver's inference.
    fn flow_stage(now: u64) -> u32;
}

/// The body of every [`InferStage::infer`].
#[inline(always)]
fn infer_stage<L: NeuronLoop>(mut looper: L) -> u32 {
    let (Some(scratch), Some(packet)) = (SCRATCH.get_ptr_mut(0), PACKET.get_ptr_mut(0)) else {
        return NO_MODEL_LOADED;
    };
    // SAFETY: per-CPU map values, used by one program run at a time on this CPU.
    let (scratch, packet) = unsafe { (&mut *scratch, &mut *packet) };
    let mut read = #[inline(always)]
    |model: &'static Model| run_model(model, scratch, &mut looper);
    match read_once(&mut read) {
        Ok(Some((class, version))) => {
            packet.class = class;
            packet.version = version;
            INFERRED
        }
        Ok(None) => RACED,
        Err(_) => NO_MODEL_LOADED,
    }
}

/// Two global functions per loop driver, the inference and the flow stage around it: the
/// verifier checks a global function once, on its own, with unknown arguments, however many
/// paths of the program reach the call (the bounded inference alone is a few hundred thousand
/// verified instructions; walked once per path that reached it, it took the 5.10 verifier
/// past its limit of a million).
macro_rules! stages {
    ($($driver:ty = $looper:expr => $infer:ident, $flow:ident;)*) => {$(
        #[unsafe(no_mangle)]
        #[inline(never)]
        pub extern "C" fn $infer() -> u32 {
            infer_stage($looper)
        }

        #[unsafe(no_mangle)]
        #[inline(never)]
        pub extern "C" fn $flow(now: u64) -> u32 {
            crate::classify::flow_stage::<$driver>(now)
        }

        impl InferStage for $driver {
            #[inline(always)]
            fn infer() -> u32 {
                $infer()
            }

            #[inline(always)]
            fn flow_stage(now: u64) -> u32 {
                $flow(now)
            }
        }
    )*};
}

stages! {
    BpfLoop = BpfLoop => npk_infer_bpf_loop, npk_flow_bpf_loop;
    BoundedLoop<32> = BoundedLoop::<32> => npk_infer_bounded_32, npk_flow_bounded_32;
    BoundedLoop<64> = BoundedLoop::<64> => npk_infer_bounded_64, npk_flow_bounded_64;
    BoundedLoop<128> = BoundedLoop::<128> => npk_infer_bounded_128, npk_flow_bounded_128;
}
