//! Resource quantities as validation and QoS need them: a comparable number. The exact
//! parser is `crate::quantity`; this keeps the validators' float view of it.

/// The value of a quantity string, or None when it is not a quantity.
pub fn parse(s: &str) -> Option<f64> {
    crate::quantity::parse(s)
        .ok()
        .map(|q| q.nanos() as f64 / 1e9)
}

/// Whether two quantity strings denote the same amount (`1` and `1000m`).
pub fn same(a: &str, b: &str) -> bool {
    match (crate::quantity::parse(a), crate::quantity::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_exponents() {
        assert_eq!(parse("500m"), Some(0.5));
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("2k"), Some(2000.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1Xi"), None);
        assert_eq!(parse(""), None);
        assert!(same("1", "1000m"));
        assert!(!same("1", "1001m"));
    }
}
