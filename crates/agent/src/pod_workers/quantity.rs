//! Kubernetes resource quantities (`100m`, `0.5`, `64Mi`, `1G`, `1e3`) as the numbers the
//! cgroup mapping needs: CPU in millicores, everything else in whole units (bytes).

/// Millicores of a CPU quantity, rounded up as the kubelet does (`0.0001` is 1m).
pub fn millis(q: &str) -> Option<i64> {
    let (mantissa, scale) = parse(q)?;
    let v = mantissa * scale * 1000.0;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(v.ceil() as i64)
}

/// Whole units (bytes for memory), rounded up.
pub fn value(q: &str) -> Option<i64> {
    let (mantissa, scale) = parse(q)?;
    let v = mantissa * scale;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(v.ceil() as i64)
}

fn parse(q: &str) -> Option<(f64, f64)> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mantissa: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some((mantissa, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_forms() {
        assert_eq!(millis("100m"), Some(100));
        assert_eq!(millis("0.5"), Some(500));
        assert_eq!(millis("2"), Some(2000));
        assert_eq!(millis("0.0001"), Some(1));
        assert_eq!(value("64Mi"), Some(64 << 20));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("128974848"), Some(128_974_848));
        assert_eq!(value("12x"), None);
        assert_eq!(value(""), None);
        assert_eq!(value("-1"), None);
    }
}
