//! The trainer's matrix products: two register-tiled kernels that allocate nothing.
//!
//! Every product of a dense layer has one of two shapes:
//! - [`gemm_nt`], `C = A · Bᵀ` with both operands read along rows (dot products): the forward
//!   pass `Y = X Wᵀ`, with the bias and the ReLU applied as each tile is stored;
//! - [`gemm_nn`], `C = A · B` with `B` read along rows (scaled row sums): the weight gradient
//!   `dW = dYᵀ X` and the input gradient `dX = dY W`, the latter gated by the ReLU derivative
//!   as it is stored.
//!
//! Each kernel body is compiled twice: with AVX2 and FMA, picked at run time where the CPU has
//! them, and for the baseline target. The tiles keep their accumulators in `[f32; 8]` arrays,
//! which LLVM maps to vector registers. Large products are split by output columns over the
//! rayon pool; small ones stay on the calling thread, where a split costs more than it saves.

use rayon::prelude::*;

/// Lanes of one accumulator: one AVX register of f32.
const L: usize = 8;

/// How a matrix operand is stored: as itself, or as its transpose (both row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Normal,
    Transposed,
}

/// Below this many multiply-adds a product stays on one thread (a split costs a few µs).
const PARALLEL_MACS: usize = 1 << 21;

/// Columns of one parallel task: a multiple of the `gemm_nn` tile widths (8, 16); `gemm_nt`'s
/// groups of three columns end a task with a pair or a single column.
const TASK_COLS: usize = 64;

/// Whether the AVX2+FMA build of the kernels can run here; std caches the CPUID answer.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[inline(always)]
fn hsum(v: [f32; L]) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// The output matrix shared by the column tasks of one product: each task writes only its own
/// columns `j0..j1` of every row.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
}

// SAFETY: tasks write disjoint column ranges (see `Out`), and the product's `&mut` borrow of
// the buffer outlives every task (rayon joins them before `gemm_*` returns).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    fn new(c: &mut [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(c.len(), rows * cols, "gemm: c is not {rows} x {cols}");
        Self {
            ptr: c.as_mut_ptr(),
            rows,
            cols,
        }
    }

    /// Row `i`, columns `j..j + len`, as a slice.
    ///
    /// # Safety
    /// No other task touches these columns while the slice lives.
    #[inline(always)]
    unsafe fn row_mut<'a>(self, i: usize, j: usize, len: usize) -> &'a mut [f32] {
        assert!(i < self.rows && j + len <= self.cols);
        // SAFETY: in bounds (asserted; `new` checked the buffer's length), exclusive by the
        // caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.cols + j), len) }
    }

    /// # Safety
    /// `i < rows`, `j < cols`, and no other task writes column `j`.
    #[inline(always)]
    unsafe fn set(self, i: usize, j: usize, v: f32) {
        debug_assert!(i < self.rows && j < self.cols);
        // SAFETY: in bounds by the caller's contract; `new` checked the buffer's length.
        unsafe { *self.ptr.add(i * self.cols + j) = v }
    }
}

/// Runs `task(j0, j1)` over column ranges covering `0..n`: in parallel when the product has
/// at least [`PARALLEL_MACS`] multiply-adds, else as one call.
fn split_columns(macs: usize, n: usize, task: impl Fn(usize, usize) + Sync) {
    if macs < PARALLEL_MACS || n < 2 * TASK_COLS {
        task(0, n);
    } else {
        (0..n.div_ceil(TASK_COLS))
            .into_par_iter()
            .for_each(|t| task(t * TASK_COLS, ((t + 1) * TASK_COLS).min(n)));
    }
}

/// The register tiles of both kernels, as one implementation per instruction set; the loops
/// around them are shared.
trait Tiles {
    /// Whether the scalar edges fuse their multiply-adds like the tiles do.
    const FMA: bool;

    /// Dot products of rows `i..i + R` of `a` with rows `j..j + C` of `b` (both `.. x k`).
    fn nt_tile<const R: usize, const C: usize>(
        k: usize,
        a: &[f32],
        b: &[f32],
        i: usize,
        j: usize,
    ) -> [[f32; C]; R];

    /// Rows `i..i + R`, columns `j..j + V * L` of `A · b` (see [`gemm_nn`]).
    fn nn_tile<const R: usize, const V: usize, const T: bool>(
        k: usize,
        a: &[f32],
        b: &[f32],
        out: Out,
        i: usize,
        j: usize,
    ) -> [[[f32; L]; V]; R];
}

/// Plain Rust, for CPUs without AVX2 and FMA and for other architectures.
struct Portable;

impl Tiles for Portable {
    const FMA: bool = false;

    #[inline(always)]
    fn nt_tile<const R: usize, const C: usize>(
        k: usize,
        a: &[f32],
        b: &[f32],
        i: usize,
        j: usize,
    ) -> [[f32; C]; R] {
        nt_tile::<R, C>(k, a, b, i, j)
    }

    #[inline(always)]
    fn nn_tile<const R: usize, const V: usize, const T: bool>(
        k: usize,
        a: &[f32],
        b: &[f32],
        out: Out,
        i: usize,
        j: usize,
    ) -> [[[f32; L]; V]; R] {
        nn_tile::<R, V, T>(k, a, b, out, i, j)
    }
}

/// AVX2 + FMA intrinsics: used only under [`nt_avx2`] and [`nn_avx2`], which run after
/// [`avx2_fma`] said yes.
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Tiles for Avx2 {
    const FMA: bool = true;

    #[inline(always)]
    fn nt_tile<const R: usize, const C: usize>(
        k: usize,
        a: &[f32],
        b: &[f32],
        i: usize,
        j: usize,
    ) -> [[f32; C]; R] {
        // SAFETY: see the type's doc: the CPU has AVX2 and FMA.
        unsafe { avx2::nt_tile::<R, C>(k, a, b, i, j) }
    }

    #[inline(always)]
    fn nn_tile<const R: usize, const V: usize, const T: bool>(
        k: usize,
        a: &[f32],
        b: &[f32],
        out: Out,
        i: usize,
        j: usize,
    ) -> [[[f32; L]; V]; R] {
        // SAFETY: see the type's doc: the CPU has AVX2 and FMA.
        unsafe { avx2::nn_tile::<R, V, T>(k, a, b, out, i, j) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps,
        _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::{L, Out, hsum};

    /// Loads `s[p..p + L]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load(s: &[f32], p: usize) -> __m256 {
        let lanes = &s[p..p + L];
        // SAFETY: `lanes` holds L floats; loadu has no alignment requirement.
        unsafe { _mm256_loadu_ps(lanes.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lanes(v: __m256) -> [f32; L] {
        let mut out = [0.0; L];
        // SAFETY: `out` holds L floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        out
    }

    /// The horizontal sums of eight vectors, by a tree of `hadd`s.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum8(v: [__m256; 8]) -> [f32; L] {
        let t0 = _mm256_hadd_ps(v[0], v[1]);
        let t1 = _mm256_hadd_ps(v[2], v[3]);
        let t2 = _mm256_hadd_ps(v[4], v[5]);
        let t3 = _mm256_hadd_ps(v[6], v[7]);
        // Lane halves: u0 = [sums of v0..v3 over the low 4 lanes | over the high 4 lanes].
        let u0 = _mm256_hadd_ps(t0, t1);
        let u1 = _mm256_hadd_ps(t2, t3);
        let low = _mm256_permute2f128_ps::<0x20>(u0, u1);
        let high = _mm256_permute2f128_ps::<0x31>(u0, u1);
        lanes(_mm256_add_ps(low, high))
    }

    /// See `Tiles::nt_tile`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn nt_tile<const R: usize, const C: usize>(
        k: usize,
        a: &[f32],
        b: &[f32],
        i: usize,
        j: usize,
    ) -> [[f32; C]; R] {
        let mut ar: [&[f32]; R] = [&[]; R];
        for (r, row) in ar.iter_mut().enumerate() {
            *row = &a[(i + r) * k..(i + r + 1) * k];
        }
        let mut br: [&[f32]; C] = [&[]; C];
        for (c, row) in br.iter_mut().enumerate() {
            *row = &b[(j + c) * k..(j + c + 1) * k];
        }
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let full = k - k % L;
        let mut p = 0;
        while p < full {
            let mut bv = [_mm256_setzero_ps(); C];
            for c in 0..C {
                bv[c] = load(br[c], p);
            }
            for r in 0..R {
                let av = load(ar[r], p);
                for c in 0..C {
                    acc[r][c] = _mm256_fmadd_ps(av, bv[c], acc[r][c]);
                }
            }
            p += L;
        }
        let mut sums = [[0.0f32; C]; R];
        if R * C == 8 {
            // 4 x 2 tiles (a task's last pair of columns): all eight horizontal sums at once.
            let mut flat = [_mm256_setzero_ps(); 8];
            for r in 0..R {
                for c in 0..C {
                    flat[r * C + c] = acc[r][c];
                }
            }
            let all = hsum8(flat);
            for r in 0..R {
                for c in 0..C {
                    sums[r][c] = all[r * C + c];
                }
            }
        } else {
            for r in 0..R {
                for c in 0..C {
                    sums[r][c] = hsum(lanes(acc[r][c]));
                }
            }
        }
        for r in 0..R {
            for c in 0..C {
                let mut s = sums[r][c];
                for q in full..k {
                    s = ar[r][q].mul_add(br[c][q], s);
                }
                sums[r][c] = s;
            }
        }
        sums
    }

    /// See `Tiles::nn_tile`.
    #[inline]
    #[expect(
        clippy::needless_range_loop,
        reason = "indices run over several tile arrays at once"
    )]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn nn_tile<const R: usize, const V: usize, const T: bool>(
        k: usize,
        a: &[f32],
        b: &[f32],
        out: Out,
        i: usize,
        j: usize,
    ) -> [[[f32; L]; V]; R] {
        let (m, n) = (out.rows, out.cols);
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        for p in 0..k {
            let row = &b[p * n + j..p * n + j + V * L];
            let mut bv = [_mm256_setzero_ps(); V];
            for v in 0..V {
                bv[v] = load(row, v * L);
            }
            for r in 0..R {
                let s = _mm256_set1_ps(if T {
                    a[p * m + i + r]
                } else {
                    a[(i + r) * k + p]
                });
                for v in 0..V {
                    acc[r][v] = _mm256_fmadd_ps(s, bv[v], acc[r][v]);
                }
            }
        }
        let mut sums = [[[0.0f32; L]; V]; R];
        for r in 0..R {
            for v in 0..V {
                sums[r][v] = lanes(acc[r][v]);
            }
        }
        sums
    }
}

/// `c = act(a · bᵀ + bias)`, `act` the ReLU when `relu`, else the identity.
///
/// # Shapes
/// `a`: `m x k`; `b`: `n x k`; `bias`: `n`; `c`: `m x n` (all row-major).
///
/// # Panics
/// When a slice length does not match its shape: the trainer sizes every buffer from the
/// model, so a mismatch is a bug in this crate.
#[expect(
    clippy::too_many_arguments,
    reason = "a BLAS-like signature plus the fused epilogue"
)]
pub fn gemm_nt(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    relu: bool,
    c: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "gemm: a is not {m} x {k}");
    assert_eq!(b.len(), n * k, "gemm: b is not {n} x {k}");
    assert_eq!(bias.len(), n, "gemm: bias is not {n} long");
    let out = Out::new(c, m, n);
    split_columns(m * n * k, n, |j0, j1| {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { nt_avx2(k, a, b, bias, relu, out, j0, j1) };
            return;
        }
        nt_cols::<Portable>(k, a, b, bias, relu, out, j0, j1);
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[expect(clippy::too_many_arguments, reason = "forwards nt_cols' arguments")]
fn nt_avx2(
    k: usize,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    relu: bool,
    out: Out,
    j0: usize,
    j1: usize,
) {
    nt_cols::<Avx2>(k, a, b, bias, relu, out, j0, j1);
}

/// Columns `j0..j1` of [`gemm_nt`]. Groups of three `b` rows outermost, so each is read from
/// memory once while every row tile of `a` (small: a batch) passes over it from cache. Three
/// rather than two: a 4 x 3 tile's 12 accumulators, 3 row loads and 1 of `a` fill the 16 AVX
/// registers, 7 loads per 12 FMAs instead of 6 per 8 (Fashion-MNIST 784-256-128-10, batch
/// 128, one epoch on one thread: 1.18-1.19 s instead of 1.22-1.27).
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "see gemm_nt")]
fn nt_cols<K: Tiles>(
    k: usize,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    relu: bool,
    out: Out,
    j0: usize,
    j1: usize,
) {
    let mut j = j0;
    while j < j1 {
        if j + 3 <= j1 {
            nt_rows::<3, K>(k, a, b, bias, relu, out, j);
            j += 3;
        } else if j + 2 <= j1 {
            nt_rows::<2, K>(k, a, b, bias, relu, out, j);
            j += 2;
        } else {
            nt_rows::<1, K>(k, a, b, bias, relu, out, j);
            j += 1;
        }
    }
}

/// Every row of `c` in columns `j..j + C`.
#[inline(always)]
fn nt_rows<const C: usize, K: Tiles>(
    k: usize,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    relu: bool,
    out: Out,
    j: usize,
) {
    let mut i = 0;
    while i < out.rows {
        if i + 4 <= out.rows {
            let t = K::nt_tile::<4, C>(k, a, b, i, j);
            nt_store(t, bias, relu, out, i, j);
            i += 4;
        } else if i + 2 <= out.rows {
            let t = K::nt_tile::<2, C>(k, a, b, i, j);
            nt_store(t, bias, relu, out, i, j);
            i += 2;
        } else {
            let t = K::nt_tile::<1, C>(k, a, b, i, j);
            nt_store(t, bias, relu, out, i, j);
            i += 1;
        }
    }
}

/// Dot products of rows `i..i + R` of `a` with rows `j..j + C` of `b`.
#[inline(always)]
fn nt_tile<const R: usize, const C: usize>(
    k: usize,
    a: &[f32],
    b: &[f32],
    i: usize,
    j: usize,
) -> [[f32; C]; R] {
    // Plain loops, no closures: a closure is compiled on its own, without the caller's target
    // features.
    let mut ar: [&[f32]; R] = [&[]; R];
    for (r, row) in ar.iter_mut().enumerate() {
        *row = &a[(i + r) * k..(i + r + 1) * k];
    }
    let mut br: [&[f32]; C] = [&[]; C];
    for (c, row) in br.iter_mut().enumerate() {
        *row = &b[(j + c) * k..(j + c + 1) * k];
    }
    let mut acc = [[[0.0f32; L]; C]; R];
    let full = k - k % L;
    let mut p = 0;
    while p < full {
        let mut av = [[0.0f32; L]; R];
        for r in 0..R {
            av[r].copy_from_slice(&ar[r][p..p + L]);
        }
        let mut bv = [[0.0f32; L]; C];
        for c in 0..C {
            bv[c].copy_from_slice(&br[c][p..p + L]);
        }
        for r in 0..R {
            for c in 0..C {
                for l in 0..L {
                    acc[r][c][l] += av[r][l] * bv[c][l];
                }
            }
        }
        p += L;
    }
    let mut sums = [[0.0f32; C]; R];
    for r in 0..R {
        for c in 0..C {
            let mut s = hsum(acc[r][c]);
            for q in full..k {
                s += ar[r][q] * br[c][q];
            }
            sums[r][c] = s;
        }
    }
    sums
}

#[inline(always)]
fn nt_store<const R: usize, const C: usize>(
    t: [[f32; C]; R],
    bias: &[f32],
    relu: bool,
    out: Out,
    i: usize,
    j: usize,
) {
    for (r, row) in t.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let v = v + bias[j + c];
            let v = if relu { v.max(0.0) } else { v };
            // SAFETY: i + r < rows (nt_rows), j + c < j1 <= cols (nt_cols), and j..j1 is this
            // task's own range.
            unsafe { out.set(i + r, j + c, v) };
        }
    }
}

/// `c = A · b`, then `c[i][j] = 0` wherever `gate[i][j] <= 0` when a gate is given (the
/// ReLU's derivative, from the layer's output).
///
/// # Shapes
/// `A`: `m x k`, stored as `a` in `a_layout` (`Transposed`: `a` is `k x m`); `b`: `k x n`;
/// `gate` and `c`: `m x n` (all row-major).
///
/// # Panics
/// When a slice length does not match its shape (a bug in this crate, see [`gemm_nt`]).
#[expect(
    clippy::too_many_arguments,
    reason = "a BLAS-like signature plus the fused epilogue"
)]
pub fn gemm_nn(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    gate: Option<&[f32]>,
    c: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "gemm: a is not {m} x {k}");
    assert_eq!(b.len(), k * n, "gemm: b is not {k} x {n}");
    if let Some(g) = gate {
        assert_eq!(g.len(), m * n, "gemm: gate is not {m} x {n}");
    }
    let out = Out::new(c, m, n);
    let t = a_layout == Layout::Transposed;
    split_columns(m * n * k, n, |j0, j1| {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { nn_avx2(k, a, t, b, gate, out, j0, j1) };
            return;
        }
        if t {
            nn_cols::<true, Portable>(k, a, b, gate, out, j0, j1);
        } else {
            nn_cols::<false, Portable>(k, a, b, gate, out, j0, j1);
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[expect(clippy::too_many_arguments, reason = "forwards nn_cols' arguments")]
fn nn_avx2(
    k: usize,
    a: &[f32],
    t: bool,
    b: &[f32],
    gate: Option<&[f32]>,
    out: Out,
    j0: usize,
    j1: usize,
) {
    if t {
        nn_cols::<true, Avx2>(k, a, b, gate, out, j0, j1);
    } else {
        nn_cols::<false, Avx2>(k, a, b, gate, out, j0, j1);
    }
}

/// Columns `j0..j1` of [`gemm_nn`]: blocks of 16 and 8 columns, then single columns. Column
/// blocks outermost, so the block's slice of `b` stays in cache across the row tiles.
#[inline(always)]
fn nn_cols<const T: bool, K: Tiles>(
    k: usize,
    a: &[f32],
    b: &[f32],
    gate: Option<&[f32]>,
    out: Out,
    j0: usize,
    j1: usize,
) {
    let mut j = j0;
    while j + 2 * L <= j1 {
        nn_rows::<2, T, K>(k, a, b, gate, out, j);
        j += 2 * L;
    }
    if j + L <= j1 {
        nn_rows::<1, T, K>(k, a, b, gate, out, j);
        j += L;
    }
    let (m, n) = (out.rows, out.cols);
    for j in j..j1 {
        for i in 0..m {
            let mut s = 0.0;
            for p in 0..k {
                let x = if T { a[p * m + i] } else { a[i * k + p] };
                s = if K::FMA {
                    x.mul_add(b[p * n + j], s)
                } else {
                    x * b[p * n + j] + s
                };
            }
            store_gated(gate, out, i, j, s);
        }
    }
}

/// Every row of `c` in columns `j..j + V * L`.
#[inline(always)]
fn nn_rows<const V: usize, const T: bool, K: Tiles>(
    k: usize,
    a: &[f32],
    b: &[f32],
    gate: Option<&[f32]>,
    out: Out,
    j: usize,
) {
    let mut i = 0;
    while i < out.rows {
        if i + 4 <= out.rows {
            let t = K::nn_tile::<4, V, T>(k, a, b, out, i, j);
            nn_store(t, gate, out, i, j);
            i += 4;
        } else if i + 2 <= out.rows {
            let t = K::nn_tile::<2, V, T>(k, a, b, out, i, j);
            nn_store(t, gate, out, i, j);
            i += 2;
        } else {
            let t = K::nn_tile::<1, V, T>(k, a, b, out, i, j);
            nn_store(t, gate, out, i, j);
            i += 1;
        }
    }
}

/// Rows `i..i + R`, columns `j..j + V * L` of `A · b`.
#[inline(always)]
fn nn_tile<const R: usize, const V: usize, const T: bool>(
    k: usize,
    a: &[f32],
    b: &[f32],
    out: Out,
    i: usize,
    j: usize,
) -> [[[f32; L]; V]; R] {
    let (m, n) = (out.rows, out.cols);
    let mut acc = [[[0.0f32; L]; V]; R];
    for p in 0..k {
        let row = &b[p * n + j..p * n + j + V * L];
        let mut bv = [[0.0f32; L]; V];
        for v in 0..V {
            bv[v].copy_from_slice(&row[v * L..(v + 1) * L]);
        }
        let mut s = [0.0f32; R];
        for (r, s) in s.iter_mut().enumerate() {
            *s = if T {
                a[p * m + i + r]
            } else {
                a[(i + r) * k + p]
            };
        }
        for r in 0..R {
            for v in 0..V {
                for l in 0..L {
                    acc[r][v][l] += s[r] * bv[v][l];
                }
            }
        }
    }
    acc
}

#[inline(always)]
fn nn_store<const R: usize, const V: usize>(
    t: [[[f32; L]; V]; R],
    gate: Option<&[f32]>,
    out: Out,
    i: usize,
    j: usize,
) {
    for (r, row) in t.iter().enumerate() {
        let start = (i + r) * out.cols + j;
        // SAFETY: row i + r < rows, columns j..j + V * L lie inside this task's range (nn_cols),
        // so no other task touches them while this slice lives.
        let dst = unsafe { out.row_mut(i + r, j, V * L) };
        for (v, lanes) in row.iter().enumerate() {
            let dst = &mut dst[v * L..(v + 1) * L];
            match gate {
                None => dst.copy_from_slice(lanes),
                Some(g) => {
                    let g = &g[start + v * L..start + (v + 1) * L];
                    for ((d, &x), &g) in dst.iter_mut().zip(lanes).zip(g) {
                        *d = if g > 0.0 { x } else { 0.0 };
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn store_gated(gate: Option<&[f32]>, out: Out, i: usize, j: usize, v: f32) {
    let open = gate.is_none_or(|g| g[i * out.cols + j] > 0.0);
    // SAFETY: callers pass i < rows and j inside their own column range (nn_cols).
    unsafe { out.set(i, j, if open { v } else { 0.0 }) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        m: usize,
        k: usize,
        n: usize,
        a: impl Fn(usize, usize) -> f32,
        b: impl Fn(usize, usize) -> f32,
    ) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a(i, p) * b(p, j)).sum();
            }
        }
        c
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|v| ((v as u32).wrapping_mul(2_654_435_761) ^ seed) % 17)
            .map(|v| v as f32 / 4.0 - 2.0)
            .collect()
    }

    #[track_caller]
    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        for (idx, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "{what}: [{idx}] {g} != {w}"
            );
        }
    }

    /// Sizes around every tile edge (1, 4, 8, 16 and their neighbours), plus one large
    /// enough to be split over threads.
    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1, 1),
        (3, 5, 4),
        (4, 8, 16),
        (5, 9, 17),
        (9, 17, 25),
        (13, 33, 40),
        (40, 300, 260),
    ];

    #[test]
    fn nt_matches_a_naive_product_with_bias_and_relu() {
        for (m, k, n) in SHAPES {
            let (a, b, bias) = (values(m * k, 1), values(n * k, 2), values(n, 3));
            let want = naive(m, k, n, |i, p| a[i * k + p], |p, j| b[j * k + p]);
            for relu in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                gemm_nt(m, k, n, &a, &b, &bias, relu, &mut c);
                let want: Vec<f32> = want
                    .iter()
                    .enumerate()
                    .map(|(idx, &v)| v + bias[idx % n])
                    .map(|v| if relu { v.max(0.0) } else { v })
                    .collect();
                assert_close(&c, &want, &format!("nt {m}x{k}x{n} relu {relu}"));
            }
        }
    }

    #[test]
    fn nn_matches_a_naive_product_in_both_layouts_with_and_without_gate() {
        for (m, k, n) in SHAPES {
            let (a, b, gate) = (values(m * k, 4), values(k * n, 5), values(m * n, 6));
            // `a` read as m x k, or as the transpose of a k x m matrix.
            for (layout, at) in [
                (
                    Layout::Normal,
                    &(|i, p| a[i * k + p]) as &dyn Fn(usize, usize) -> f32,
                ),
                (Layout::Transposed, &|i, p| a[p * m + i]),
            ] {
                let want = naive(m, k, n, at, |p, j| b[p * n + j]);
                let mut c = vec![f32::NAN; m * n];
                gemm_nn(m, k, n, &a, layout, &b, None, &mut c);
                assert_close(&c, &want, &format!("nn {m}x{k}x{n} {layout:?}"));
                gemm_nn(m, k, n, &a, layout, &b, Some(&gate), &mut c);
                let gated: Vec<f32> = want
                    .iter()
                    .zip(&gate)
                    .map(|(&v, &g)| if g > 0.0 { v } else { 0.0 })
                    .collect();
                assert_close(&c, &gated, &format!("nn gated {m}x{k}x{n} {layout:?}"));
            }
        }
    }

    #[test]
    #[should_panic(expected = "gemm: b is not 2 x 2")]
    fn rejects_mismatched_shapes() {
        gemm_nn(
            1,
            2,
            2,
            &[0.0; 2],
            Layout::Normal,
            &[0.0; 3],
            None,
            &mut [0.0; 2],
        );
    }
}
