//! The trainer's matrix products: one packed, register-tiled kernel that allocates nothing.
//!
//! Every product of a dense layer is [`gemm`], `C = A · B`, with `A` and `B` each stored
//! row-major as themselves or as their transpose ([`Layout`]), and an [`Epilogue`] applied as
//! each tile is stored:
//! - the forward pass `Y = X Wᵀ` (`B` transposed), with the bias and the ReLU;
//! - the weight gradient `dW = dYᵀ X` (`A` transposed);
//! - the input gradient `dX = dY W`, gated by the ReLU's derivative.
//!
//! The loops are BLIS's, without the packing of `A`. `C` is computed in strips of [`NR`] = 16
//! columns; for each strip, each block of up to [`KC`] rows of `B` is copied ("packed") into a
//! contiguous `KC x 16` buffer on the stack, which stays in L1 while the micro-kernel sweeps
//! every [`MR`] = 6 rows of `A` over it. The kernel holds a 6 x 16 tile of `C` in 12 AVX
//! registers: per row of the block, 2 loads of `B` and 6 broadcasts of `A` feed 12 FMAs, in
//! either layout of `A` (6 rows read along, or 6 adjacent floats). So every operand streams
//! through contiguous memory whatever its layout, and the forward pass runs as fast as the
//! backward products (the dot-product kernel it replaces, with `B` read along its stored rows,
//! ran at half their speed per multiply-add).
//!
//! A product with fewer than 16 rows (a small batch) is computed transposed, `Cᵀ = Bᵀ Aᵀ`, and
//! stored back transposed: the packed operand is then the batch, not a whole weight matrix
//! that would be copied for a few multiply-adds per weight. A tiny product (under
//! [`TINY_MACS`]) is a plain triple loop.
//!
//! The kernel is compiled twice: with AVX2 and FMA, picked at run time where the CPU has them,
//! and for the baseline target. Blocks of strips and rows are independent: large products
//! spread them over the rayon pool; small ones stay on the calling thread, where a split costs
//! more than it saves. Each element of `C` is summed in the same order however the work is
//! split, so results do not depend on the thread count.

use std::{mem::MaybeUninit, ops::Range};

use rayon::prelude::*;

/// Lanes of one AVX register of f32.
const L: usize = 8;

/// Columns of `C` per strip and per micro-kernel tile: two registers.
const NR: usize = 2 * L;

/// Rows of `C` per micro-kernel tile: 12 accumulators, 2 registers of `B` and one broadcast
/// use 15 of the 16 AVX registers.
const MR: usize = 6;

/// Rows of `B` packed at once, at most: a 16 KiB block, half of L1.
const KC: usize = 256;

/// Below this many multiply-adds a product stays on one thread (a split costs a few µs).
pub(super) const PARALLEL_MACS: usize = 1 << 19;

/// Below this many multiply-adds a product is a plain triple loop: setting up the tiles of a
/// product as small as the iris models' (tens of multiply-adds) costs more than it saves.
const TINY_MACS: usize = 1 << 12;

/// Tasks a parallel product is cut into, at least where it has the rows: enough for the
/// two workers of a shared machine to even out.
const TASKS: usize = 8;

/// How a matrix operand is stored: as itself, or as its transpose (both row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Normal,
    Transposed,
}

/// What is stored into `C` for each product `s = (A · B)[i][j]`.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// `s`.
    Plain,
    /// `s + bias[j]`, then the ReLU when `relu`.
    Bias { bias: &'a [f32], relu: bool },
    /// `s` where `gate[i][j] > 0`, else 0 (`gate` is `m x n`: the ReLU's derivative, read from
    /// the layer's output).
    Gate(&'a [f32]),
}

impl Epilogue<'_> {
    /// What is stored for the product `s` whose bias is `bias[bias_at]` and whose gate is
    /// `gate[gate_at]` (the scalar paths and the tests' reference; the tiles store in bulk).
    #[inline]
    fn apply(self, s: f32, bias_at: usize, gate_at: usize) -> f32 {
        match self {
            Self::Plain => s,
            Self::Bias { bias, relu } => {
                let v = s + bias[bias_at];
                if relu { v.max(0.0) } else { v }
            }
            Self::Gate(g) => {
                if g[gate_at] > 0.0 {
                    s
                } else {
                    0.0
                }
            }
        }
    }
}

/// Whether the AVX2+FMA build of the kernel can run here; std caches the CPUID answer.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// A `rows x cols` operand: element `(r, c)` at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    layout: Layout,
    rs: usize,
    cs: usize,
}

impl<'a> Operand<'a> {
    fn new(data: &'a [f32], layout: Layout, rows: usize, cols: usize) -> Self {
        let (rs, cs) = match layout {
            Layout::Normal => (cols, 1),
            Layout::Transposed => (1, rows),
        };
        Self {
            data,
            layout,
            rs,
            cs,
        }
    }
}

/// The `rows x cols` product as computed, shared by the tasks of one product: each task
/// writes only its own block of rows and columns. Stored as itself, or, when `transposed`,
/// as its transpose (element `(i, j)` at `j * rows + i`).
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    transposed: bool,
}

// SAFETY: tasks write disjoint blocks (see `Out`), and the product's `&mut` borrow of the
// buffer outlives every task (rayon joins them before `gemm` returns).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// Where element `(i, j)` is stored.
    #[inline(always)]
    fn at(self, i: usize, j: usize) -> usize {
        assert!(i < self.rows && j < self.cols);
        if self.transposed {
            j * self.rows + i
        } else {
            i * self.cols + j
        }
    }

    /// Row `i`, columns `j..j + len`, as a slice: the layout that is not transposed only.
    ///
    /// # Safety
    /// No other task touches these elements while the slice lives.
    #[inline(always)]
    unsafe fn row_mut<'b>(self, i: usize, j: usize, len: usize) -> &'b mut [f32] {
        assert!(!self.transposed && len > 0);
        let at = self.at(i, j + len - 1) + 1 - len;
        // SAFETY: in bounds (`at` asserts; `gemm` checked the buffer's length), exclusive by
        // the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), len) }
    }

    /// # Safety
    /// No other task touches element `(i, j)` meanwhile.
    #[inline(always)]
    unsafe fn element<'b>(self, i: usize, j: usize) -> &'b mut f32 {
        let at = self.at(i, j);
        // SAFETY: in bounds (`at` asserts), exclusive by the caller's contract.
        unsafe { &mut *self.ptr.add(at) }
    }
}

/// One packed block of `B`: `kc` rows of [`NR`] floats, a row per cache line. Left
/// uninitialized: zeroing 16 KiB would cost more than a small product.
#[repr(C, align(64))]
struct Packed([MaybeUninit<f32>; KC * NR]);

/// The micro-kernel, as one implementation per instruction set; the loops around it are
/// shared.
trait Kernel {
    /// `acc += A[i..i + R][p0..p0 + kc] · P`, where `P` (`kc x NR`) is the first `kc * NR`
    /// floats of `packed` and `a[at]` is `A[i][p0]`.
    fn tile<const R: usize>(
        kc: usize,
        a: Operand,
        at: usize,
        packed: &[f32],
        acc: &mut [[f32; NR]; R],
    );
}

/// The last index the micro-kernel reads of `a`, checked against its length before the loop
/// reads without checks.
#[inline(always)]
#[track_caller]
fn check_tile<const R: usize>(kc: usize, a: Operand, at: usize, packed: &[f32]) {
    assert!(R > 0 && kc > 0 && packed.len() >= kc * NR);
    assert!(at + (R - 1) * a.rs + (kc - 1) * a.cs < a.data.len());
}

/// Plain Rust, for CPUs without AVX2 and FMA and for other architectures.
struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    fn tile<const R: usize>(
        kc: usize,
        a: Operand,
        at: usize,
        packed: &[f32],
        acc: &mut [[f32; NR]; R],
    ) {
        check_tile::<R>(kc, a, at, packed);
        for (p, b) in packed[..kc * NR].chunks_exact(NR).enumerate() {
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = a.data[at + r * a.rs + p * a.cs];
                for (c, &b) in acc.iter_mut().zip(b) {
                    *c += x * b;
                }
            }
        }
    }
}

/// AVX2 + FMA intrinsics: used only under [`block_avx2`], which runs after [`avx2_fma`] said
/// yes.
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn tile<const R: usize>(
        kc: usize,
        a: Operand,
        at: usize,
        packed: &[f32],
        acc: &mut [[f32; NR]; R],
    ) {
        // SAFETY: see the type's doc: the CPU has AVX2 and FMA.
        unsafe { avx2::tile::<R>(kc, a, at, packed, acc) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::{L, NR, Operand, check_tile};

    /// See `Kernel::tile`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn tile<const R: usize>(
        kc: usize,
        a: Operand,
        at: usize,
        packed: &[f32],
        acc: &mut [[f32; NR]; R],
    ) {
        check_tile::<R>(kc, a, at, packed);
        let mut c = [[_mm256_setzero_ps(); 2]; R];
        for r in 0..R {
            for h in 0..2 {
                // SAFETY: acc[r] holds NR = 2 * L floats.
                c[r][h] = unsafe { _mm256_loadu_ps(acc[r][h * L..].as_ptr()) };
            }
        }
        let (x, b) = (a.data.as_ptr(), packed.as_ptr());
        for p in 0..kc {
            // SAFETY: p < kc and packed holds kc * NR floats (checked).
            let (b0, b1) = unsafe {
                (
                    _mm256_loadu_ps(b.add(p * NR)),
                    _mm256_loadu_ps(b.add(p * NR + L)),
                )
            };
            for (r, c) in c.iter_mut().enumerate() {
                // SAFETY: at + r * rs + p * cs is at most the index checked above.
                let s = unsafe { _mm256_broadcast_ss(&*x.add(at + r * a.rs + p * a.cs)) };
                c[0] = _mm256_fmadd_ps(s, b0, c[0]);
                c[1] = _mm256_fmadd_ps(s, b1, c[1]);
            }
        }
        for r in 0..R {
            for h in 0..2 {
                // SAFETY: acc[r] holds NR = 2 * L floats.
                unsafe { _mm256_storeu_ps(acc[r][h * L..].as_mut_ptr(), c[r][h]) };
            }
        }
    }
}

/// `c = epilogue(A · B)`.
///
/// # Shapes
/// `A`: `m x k`, stored as `a` in `a_layout` (`Transposed`: `a` is `k x m`); `B`: `k x n`,
/// stored as `b` in `b_layout` (`Transposed`: `b` is `n x k`); `c`: `m x n` (all row-major).
///
/// # Panics
/// When `k` is 0 or a slice length does not match its shape: the trainer sizes every buffer
/// from the model, so a mismatch is a bug in this crate.
#[expect(
    clippy::too_many_arguments,
    reason = "a BLAS-like signature plus the fused epilogue"
)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    b_layout: Layout,
    epilogue: Epilogue,
    c: &mut [f32],
) {
    assert!(k > 0, "gemm: no products to sum (k = 0)");
    assert_eq!(a.len(), m * k, "gemm: a is not {m} x {k}");
    assert_eq!(b.len(), k * n, "gemm: b is not {k} x {n}");
    assert_eq!(c.len(), m * n, "gemm: c is not {m} x {n}");
    match epilogue {
        Epilogue::Plain => {}
        Epilogue::Bias { bias, .. } => assert_eq!(bias.len(), n, "gemm: bias is not {n} long"),
        Epilogue::Gate(g) => assert_eq!(g.len(), m * n, "gemm: gate is not {m} x {n}"),
    }
    if m * n * k < TINY_MACS {
        let (a, b) = (
            Operand::new(a, a_layout, m, k),
            Operand::new(b, b_layout, k, n),
        );
        return tiny(m, k, n, a, b, epilogue, c);
    }
    let flip = |l| match l {
        Layout::Normal => Layout::Transposed,
        Layout::Transposed => Layout::Normal,
    };
    let transposed = m < NR && m < n;
    let (a, b, out) = if transposed {
        // Cᵀ = Bᵀ Aᵀ: each operand read as the transpose of how it is stored.
        let out = Out {
            ptr: c.as_mut_ptr(),
            rows: n,
            cols: m,
            transposed,
        };
        let a_t = Operand::new(a, flip(a_layout), k, m);
        (Operand::new(b, flip(b_layout), n, k), a_t, out)
    } else {
        let out = Out {
            ptr: c.as_mut_ptr(),
            rows: m,
            cols: n,
            transposed,
        };
        (
            Operand::new(a, a_layout, m, k),
            Operand::new(b, b_layout, k, n),
            out,
        )
    };
    let strips = out.cols.div_ceil(NR);
    // Row blocks only where the strips are too few to keep the pool busy: each one packs the
    // strip's blocks of B again.
    let parallel = m * n * k >= PARALLEL_MACS;
    let chunks = if parallel {
        TASKS.div_ceil(strips).min(out.rows.div_ceil(MR))
    } else {
        1
    };
    let chunk_rows = out.rows.div_ceil(chunks).next_multiple_of(MR);
    let chunks = out.rows.div_ceil(chunk_rows);
    let task = |t: usize| {
        let (j, i0) = ((t / chunks) * NR, (t % chunks) * chunk_rows);
        let rows = i0..(i0 + chunk_rows).min(out.rows);
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { block_avx2(k, a, b, epilogue, out, rows, j) };
            return;
        }
        block_of::<Portable>(k, a, b, epilogue, out, rows, j);
    };
    if parallel && strips * chunks > 1 {
        (0..strips * chunks).into_par_iter().for_each(task);
    } else {
        (0..strips * chunks).for_each(task);
    }
}

/// [`gemm`] as a triple loop, for tiny products.
fn tiny(m: usize, k: usize, n: usize, a: Operand, b: Operand, epilogue: Epilogue, c: &mut [f32]) {
    for i in 0..m {
        for j in 0..n {
            let s: f32 = (0..k)
                .map(|p| a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs])
                .sum();
            c[i * n + j] = epilogue.apply(s, j, i * n + j);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2(
    k: usize,
    a: Operand,
    b: Operand,
    epilogue: Epilogue,
    out: Out,
    rows: Range<usize>,
    j: usize,
) {
    block_of::<Avx2>(k, a, b, epilogue, out, rows, j);
}

/// `rows` of the product in columns `j..j + NR` (fewer at the right edge): block by block of
/// `B`'s rows, equal blocks of at most [`KC`].
#[inline(always)]
fn block_of<K: Kernel>(
    k: usize,
    a: Operand,
    b: Operand,
    epilogue: Epilogue,
    out: Out,
    rows: Range<usize>,
    j: usize,
) {
    let nr = NR.min(out.cols - j);
    let blocks = k.div_ceil(KC);
    let kc_max = k.div_ceil(blocks);
    let mut packed = Packed([MaybeUninit::uninit(); KC * NR]);
    let mut p0 = 0;
    while p0 < k {
        let kc = kc_max.min(k - p0);
        let packed = pack(b, p0, kc, j, nr, &mut packed.0[..kc * NR]);
        let block = Block {
            kc,
            p0,
            j,
            nr,
            first: p0 == 0,
            last: p0 + kc == k,
        };
        let mut i = rows.start;
        while i < rows.end {
            let r = MR.min(rows.end - i);
            match r {
                6 => tile_of::<6, K>(a, packed, block, epilogue, out, i),
                5 => tile_of::<5, K>(a, packed, block, epilogue, out, i),
                4 => tile_of::<4, K>(a, packed, block, epilogue, out, i),
                3 => tile_of::<3, K>(a, packed, block, epilogue, out, i),
                2 => tile_of::<2, K>(a, packed, block, epilogue, out, i),
                _ => tile_of::<1, K>(a, packed, block, epilogue, out, i),
            }
            i += r;
        }
        p0 += kc;
    }
}

/// Rows `p0..p0 + kc`, columns `j..j + nr` of `B` into `dst` (`kc x NR`), zeros right of `nr`;
/// returns `dst`, every element written.
#[inline(always)]
fn pack<'d>(
    b: Operand,
    p0: usize,
    kc: usize,
    j: usize,
    nr: usize,
    dst: &'d mut [MaybeUninit<f32>],
) -> &'d [f32] {
    assert!(nr <= NR && dst.len() == kc * NR);
    let (rows, _) = dst.as_chunks_mut::<NR>();
    match b.layout {
        Layout::Normal => {
            for (p, row) in rows.iter_mut().enumerate() {
                let at = (p0 + p) * b.rs + j;
                row[..nr].write_copy_of_slice(&b.data[at..at + nr]);
                row[nr..].fill(MaybeUninit::new(0.0));
            }
        }
        Layout::Transposed => {
            // Column c of the block is row j + c of the stored transpose.
            for c in 0..nr {
                let at = (j + c) * b.cs + p0;
                for (row, &v) in rows.iter_mut().zip(&b.data[at..at + kc]) {
                    row[c] = MaybeUninit::new(v);
                }
            }
            if nr < NR {
                for row in rows.iter_mut() {
                    row[nr..].fill(MaybeUninit::new(0.0));
                }
            }
        }
    }
    // SAFETY: every element of every row was written above, in either layout; f32 and
    // MaybeUninit<f32> have the same layout.
    unsafe { &*(dst as *const [MaybeUninit<f32>] as *const [f32]) }
}

/// Where one packed block lies in the product.
#[derive(Clone, Copy)]
struct Block {
    kc: usize,
    /// First row of `B` (column of `A`) in the block.
    p0: usize,
    /// First column of the strip, and its width.
    j: usize,
    nr: usize,
    /// The first block starts from zero, the others from what `C` holds; the last applies the
    /// epilogue.
    first: bool,
    last: bool,
}

/// Rows `i..i + R` of the strip over one block.
#[inline(always)]
fn tile_of<const R: usize, K: Kernel>(
    a: Operand,
    packed: &[f32],
    blk: Block,
    epilogue: Epilogue,
    out: Out,
    i: usize,
) {
    let Block { j, nr, .. } = blk;
    let mut acc = [[0.0f32; NR]; R];
    if !blk.first {
        for (r, acc) in acc.iter_mut().enumerate() {
            for (c, acc) in acc[..nr].iter_mut().enumerate() {
                // SAFETY: (i + r, j + c) lies in this task's block (gemm).
                *acc = unsafe { *out.element(i + r, j + c) };
            }
        }
    }
    K::tile::<R>(blk.kc, a, i * a.rs + blk.p0 * a.cs, packed, &mut acc);
    if out.transposed {
        for (r, acc) in acc.iter().enumerate() {
            for (c, &s) in acc[..nr].iter().enumerate() {
                let (i, j) = (i + r, j + c);
                // The product is Cᵀ: its row i is column i of C.
                let v = if blk.last {
                    epilogue.apply(s, i, out.at(i, j))
                } else {
                    s
                };
                // SAFETY: as above.
                unsafe { *out.element(i, j) = v };
            }
        }
        return;
    }
    for (r, acc) in acc.iter().enumerate() {
        // SAFETY: as above.
        let dst = unsafe { out.row_mut(i + r, j, nr) };
        let acc = &acc[..nr];
        match epilogue {
            Epilogue::Bias { bias, relu } if blk.last => {
                for ((d, &s), &bias) in dst.iter_mut().zip(acc).zip(&bias[j..j + nr]) {
                    let v = s + bias;
                    *d = if relu { v.max(0.0) } else { v };
                }
            }
            Epilogue::Gate(gate) if blk.last => {
                let at = out.at(i + r, j);
                for ((d, &s), &g) in dst.iter_mut().zip(acc).zip(&gate[at..at + nr]) {
                    *d = if g > 0.0 { s } else { 0.0 };
                }
            }
            _ => dst.copy_from_slice(acc),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `epilogue(A · B)` by the textbook triple loop, summed in f64.
    #[expect(clippy::too_many_arguments, reason = "gemm's own signature")]
    fn naive(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        a_layout: Layout,
        b: &[f32],
        b_layout: Layout,
        epilogue: Epilogue,
    ) -> Vec<f32> {
        let at = |i: usize, p: usize| match a_layout {
            Layout::Normal => a[i * k + p],
            Layout::Transposed => a[p * m + i],
        };
        let bt = |p: usize, j: usize| match b_layout {
            Layout::Normal => b[p * n + j],
            Layout::Transposed => b[j * k + p],
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let s = (0..k)
                    .map(|p| f64::from(at(i, p)) * f64::from(bt(p, j)))
                    .sum::<f64>() as f32;
                c[i * n + j] = epilogue.apply(s, j, i * n + j);
            }
        }
        c
    }

    /// Relative to the sum of the terms' magnitudes: what float reassociation can change.
    #[track_caller]
    fn assert_close(got: &[f32], want: &[f32], scale: &[f32], what: &str) {
        for (idx, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * (1.0 + s),
                "{what}: [{idx}] {g} != {w}"
            );
        }
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|v| ((v as u32).wrapping_mul(2_654_435_761) ^ seed) % 17)
            .map(|v| v as f32 / 4.0 - 2.0)
            .collect()
    }

    const LAYOUTS: [Layout; 2] = [Layout::Normal, Layout::Transposed];

    /// Runs every layout pair and epilogue on one shape and compares with [`naive`].
    fn check(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], bias: &[f32], gate: &[f32]) {
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        for a_layout in LAYOUTS {
            for b_layout in LAYOUTS {
                // |A| · |B|: the bound of the sum's rounding error.
                let scale = naive(
                    m,
                    k,
                    n,
                    &abs(a),
                    a_layout,
                    &abs(b),
                    b_layout,
                    Epilogue::Plain,
                );
                for epilogue in [
                    Epilogue::Plain,
                    Epilogue::Bias { bias, relu: false },
                    Epilogue::Bias { bias, relu: true },
                    Epilogue::Gate(gate),
                ] {
                    let want = naive(m, k, n, a, a_layout, b, b_layout, epilogue);
                    let mut c = vec![f32::NAN; m * n];
                    gemm(m, k, n, a, a_layout, b, b_layout, epilogue, &mut c);
                    assert_close(
                        &c,
                        &want,
                        &scale,
                        &format!("{m}x{k}x{n} {a_layout:?} {b_layout:?} {epilogue:?}"),
                    );
                }
            }
        }
    }

    /// Sizes around every tile edge (1, 6, 16, 256 and their neighbours), plus ones large
    /// enough to be split over threads and to span several blocks of `B`, with many rows or
    /// few (computed transposed).
    #[test]
    fn matches_a_naive_product_at_the_tile_edges() {
        for (m, k, n) in [
            (1, 1, 1),
            (5, 3, 15),
            (6, 16, 16),
            (7, 17, 17),
            (13, 33, 40),
            (12, 256, 32),
            (12, 257, 33),
            (40, 300, 260),
            (70, 784, 48),
            (3, 784, 256),
            (10, 1000, 100),
            // Shapes of 1 with enough products to take the tiles, not the triple loop.
            (1, 5000, 1),
            (7, 700, 1),
            (17, 300, 1),
            (1, 300, 17),
        ] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            check(m, k, n, &a, &b, &values(n, 3), &values(m * n, 4));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random shapes (shapes of 1 and non-multiples of every tile size included) and
        /// values, every layout and epilogue, against the triple loop.
        #[test]
        fn matches_a_naive_product_on_random_shapes(
            m in 1usize..40,
            k in 1usize..600,
            n in 1usize..50,
            seed in any::<u64>(),
        ) {
            let mut rng = crate::rng::Rng::new(seed);
            let mut draw = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.normal() as f32).collect()
            };
            let (a, b, bias, gate) = (draw(m * k), draw(k * n), draw(n), draw(m * n));
            check(m, k, n, &a, &b, &bias, &gate);
        }
    }

    #[test]
    #[should_panic(expected = "gemm: b is not 2 x 2")]
    fn rejects_mismatched_shapes() {
        gemm(
            1,
            2,
            2,
            &[0.0; 2],
            Layout::Normal,
            &[0.0; 3],
            Layout::Normal,
            Epilogue::Plain,
            &mut [0.0; 2],
        );
    }
}
