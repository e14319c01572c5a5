//! Nearest-rank percentiles: always a value that was actually observed, which
//! reads better for latencies than an interpolated one.

/// The `q`-quantile (0.0..=1.0, clamped) of ascending `sorted`, by nearest
/// rank; `None` when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
    // The epsilon keeps 0.99 * 100 from rounding up to rank 100.
    let rank = (q * n as f64 - 1e-9).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.995), Some(100));
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.99), Some(990));
    }

    #[test]
    fn small_and_edge_inputs() {
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(percentile(&[1, 2], 0.5), Some(1));
        assert_eq!(percentile(&[1, 2], 0.99), Some(2));
        assert_eq!(percentile(&[1, 2], -1.0), Some(1));
        assert_eq!(percentile(&[1, 2], 7.0), Some(2));
        assert_eq!(percentile(&[1, 2], f64::NAN), Some(1));
    }
}
