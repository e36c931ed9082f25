//! Fixed-point arithmetic shared by the kernel and userspace.
//!
//! A real multiplier `r > 0` is stored as a pair `(multiplier, shift)` with
//! `r ~= multiplier * 2^-shift` and `multiplier` in `[2^30, 2^31)` (TFLite's convention, with a
//! plain 64-bit product instead of a doubling high multiply: BPF has 64-bit registers).

/// `round(x * multiplier / 2^shift)`, halves rounded up.
///
/// Callers keep `|x| < 2^31`, `0 <= multiplier < 2^31` and `1 <= shift <= 62`, so the product
/// stays below `2^62` and the rounding term cannot overflow. The shift is masked to 6 bits so
/// the verifier (and a corrupted model) never sees an undefined shift.
#[inline(always)]
pub fn requantize(x: i64, multiplier: i32, shift: i32) -> i64 {
    let shift = (shift & 63) as u32;
    let rounding = (1i64 << shift) >> 1;
    (x * multiplier as i64 + rounding) >> shift
}

/// Clamps to `lo..=hi` without `Ord::clamp`'s panic on `lo > hi` (validated models never have it).
#[inline(always)]
pub fn clamp(x: i64, lo: i32, hi: i32) -> i32 {
    if x < lo as i64 {
        lo
    } else if x > hi as i64 {
        hi
    } else {
        x as i32
    }
}

/// Splits a real multiplier into `(multiplier, shift)` for [`requantize`].
///
/// Returns `None` when `r` is not finite and positive or needs a shift outside `1..=62`
/// (r >= 2^30 or r < 2^-32); multipliers that small round every input to zero anyway and the
/// quantizer reports them.
#[cfg(feature = "user")]
#[allow(clippy::float_arithmetic)]
pub fn quantize_multiplier(r: f64) -> Option<(i32, i32)> {
    if !r.is_finite() || r <= 0.0 {
        return None;
    }
    let (mantissa, exponent) = libm::frexp(r); // r = mantissa * 2^exponent, mantissa in [0.5, 1)
    let mut q = libm::round(mantissa * (1u64 << 31) as f64) as i64;
    let mut exponent = exponent;
    if q == 1 << 31 {
        q /= 2;
        exponent += 1;
    }
    let shift = 31 - exponent;
    if !(1..=crate::model::MAX_SHIFT).contains(&shift) {
        return None;
    }
    Some((q as i32, shift))
}

#[cfg(all(test, feature = "user"))]
#[allow(clippy::float_arithmetic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn multiplier_round_trips_exact_powers() {
        assert_eq!(quantize_multiplier(0.5), Some((1 << 30, 31)));
        assert_eq!(quantize_multiplier(1.0), Some((1 << 30, 30)));
        assert_eq!(quantize_multiplier(0.0), None);
        assert_eq!(quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(1e-12), None);
    }

    #[test]
    fn requantize_rounds_half_up_and_masks_shift() {
        let (m, s) = quantize_multiplier(0.5).unwrap();
        assert_eq!(requantize(3, m, s), 2); // 1.5 -> 2
        assert_eq!(requantize(-3, m, s), -1); // -1.5 -> -1
        assert_eq!(requantize(-4, m, s), -2);
        // A corrupted shift of 64 + 31 behaves as 31, never as undefined behaviour.
        assert_eq!(requantize(3, m, s + 64), 2);
    }

    proptest! {
        /// The integer product is within one unit (plus the multiplier's 2^-31 relative error)
        /// of the exact real product.
        #[test]
        fn requantize_tracks_real_product(x in -(1i64 << 31) + 1..(1i64 << 31), r in 1e-9f64..1e6) {
            let (m, s) = quantize_multiplier(r).unwrap();
            let exact = x as f64 * r;
            let got = requantize(x, m, s) as f64;
            let bound = 0.5 + exact.abs() * 2f64.powi(-30) + 1e-9;
            prop_assert!((got - exact).abs() <= bound, "x={x} r={r} got={got} exact={exact}");
        }

        #[test]
        fn clamp_stays_in_range(x in any::<i64>(), lo in -1000i32..0, hi in 0i32..1000) {
            let c = clamp(x, lo, hi);
            prop_assert!((lo..=hi).contains(&c));
        }
    }
}
