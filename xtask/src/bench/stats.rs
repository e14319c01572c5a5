//! Medians, ratios and per-operation costs: the arithmetic behind the tables.

/// The median (mean of the middle two for an even count); `None` when empty
/// or when any value is not finite.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// `value / base`, when both are known and the base is positive.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

/// (max − min) / median: how far apart repeated runs of one mode landed.
pub fn spread(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    (m > 0.0).then(|| (max - min) / m)
}

/// Nanoseconds each operation took longer at `traced` ops/s than at
/// `untraced` ops/s: 1e9/traced − 1e9/untraced (negative when faster).
pub fn added_ns_per_op(untraced: Option<f64>, traced: Option<f64>) -> Option<f64> {
    match (untraced, traced) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(1e9 / b - 1e9 / a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(98.0), Some(100.0)), Some(0.98));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn spreads() {
        assert_eq!(spread(&[90.0, 100.0, 110.0]), Some(0.2));
        assert_eq!(spread(&[100.0]), Some(0.0));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn added_nanoseconds() {
        // 1M calls/s untraced (1000 ns each), 800k traced (1250 ns each).
        let added = added_ns_per_op(Some(1e6), Some(8e5)).unwrap();
        assert!((added - 250.0).abs() < 1e-9);
        assert!(added_ns_per_op(Some(1e6), Some(2e6)).unwrap() < 0.0);
        assert_eq!(added_ns_per_op(Some(0.0), Some(1.0)), None);
        assert_eq!(added_ns_per_op(None, Some(1.0)), None);
    }
}
