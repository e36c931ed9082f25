//! A safe, shape-checked front for `matrixmultiply::sgemm`, the one GEMM of the trainer.

/// How a matrix operand is stored: as itself, or as its transpose (both row-major). Transposes
/// cost nothing: they only swap the strides handed to sgemm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Normal,
    Transposed,
}

/// `c = a · b` for `a`: `m x k`, `b`: `k x n`, `c`: `m x n` (row-major); `c`'s old contents
/// are ignored.
///
/// # Panics
/// When a slice length does not match its shape: the callers size every buffer from the model,
/// so a mismatch is a bug in this crate.
#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the BLAS signature it wraps"
)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    b_layout: Layout,
    c: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "gemm: a is not {m} x {k}");
    assert_eq!(b.len(), k * n, "gemm: b is not {k} x {n}");
    assert_eq!(c.len(), m * n, "gemm: c is not {m} x {n}");
    let (rsa, csa) = match a_layout {
        Layout::Normal => (k, 1),
        Layout::Transposed => (1, m),
    };
    let (rsb, csb) = match b_layout {
        Layout::Normal => (n, 1),
        Layout::Transposed => (1, k),
    };
    // SAFETY: the asserts above make every element sgemm addresses through these strides lie
    // inside `a`, `b` and `c`; `c` is a unique borrow, so it aliases neither input; with beta 0
    // sgemm never reads `c`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
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

    #[test]
    fn all_layouts_match_a_naive_product() {
        let (m, k, n) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 - 7.0).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32 * 0.5) - 3.0).collect();
        // a stored m x k, a_t stored k x m with the same logical contents; same for b.
        let a_t: Vec<f32> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
        let b_t: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
        let want = naive(m, k, n, |i, p| a[i * k + p], |p, j| b[p * n + j]);
        for (aa, al) in [(&a, Layout::Normal), (&a_t, Layout::Transposed)] {
            for (bb, bl) in [(&b, Layout::Normal), (&b_t, Layout::Transposed)] {
                let mut c = vec![f32::NAN; m * n];
                gemm(m, k, n, aa, al, bb, bl, &mut c);
                assert_eq!(c, want, "{al:?} x {bl:?}");
            }
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
            &mut [0.0; 2],
        );
    }
}
