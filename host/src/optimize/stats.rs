//! The normal distribution, for TPE's truncated kernels and for the
//! multiple-testing note (how good the best of N trials looks by luck alone).

/// Euler-Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// The standard normal distribution function, from erfc (Numerical
/// Recipes' Chebyshev fit, fractional error under 1.2e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error under 1.2e-9), for p in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The expected maximum of `n` independent standard normal draws, by the
/// approximation of Bailey and López de Prado (2014, "The deflated Sharpe
/// ratio"): (1 - γ) Φ⁻¹(1 - 1/n) + γ Φ⁻¹(1 - 1/(n e)). Scaled by the spread
/// of the trials' Sharpe ratios, it is the best Sharpe ratio expected from
/// `n` trials of strategies with no edge at all.
pub fn expected_max_of_normals(n: u64) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let n = n as f64;
    (1.0 - EULER_GAMMA) * normal_quantile(1.0 - 1.0 / n)
        + EULER_GAMMA * normal_quantile(1.0 - 1.0 / (n * std::f64::consts::E))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_and_quantile_match_tables_and_invert_each_other() {
        for (z, p) in [(0.0, 0.5), (1.0, 0.841_344_746), (-1.96, 0.024_997_895), (3.0, 0.998_650_102)] {
            assert!((normal_cdf(z) - p).abs() < 1e-6, "Φ({z}) = {}", normal_cdf(z));
            assert!((normal_quantile(p) - z).abs() < 1e-6, "Φ⁻¹({p}) = {}", normal_quantile(p));
        }
    }

    #[test]
    fn the_best_of_more_trials_is_expected_higher() {
        // Simulated means of the maximum of n standard normals: about 1.03
        // for 3, 1.54 for 10, 2.51 for 100, 3.24 for 1,000; the approximation
        // is within a few hundredths of them from n = 10 on.
        assert_eq!(expected_max_of_normals(1), 0.0);
        for (n, want) in [(10, 1.54), (100, 2.51), (1000, 3.24)] {
            let got = expected_max_of_normals(n);
            assert!((got - want).abs() < 0.06, "n = {n}: {got}");
        }
    }
}
