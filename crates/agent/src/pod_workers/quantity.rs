//! Resource quantities as the numbers the cgroup mapping needs, through the API's exact
//! quantity type (`api::quantity`): CPU in millicores, everything else in whole units, both
//! rounded up as Kubernetes does. Negative quantities are refused.

/// Millicores of a CPU quantity (`0.0001` is 1m).
pub fn millis(q: &str) -> Option<i64> {
    let v = api::quantity::parse(q).ok()?;
    (v.nanos() >= 0).then(|| v.milli_value())
}

/// Whole units (bytes for memory).
pub fn value(q: &str) -> Option<i64> {
    let v = api::quantity::parse(q).ok()?;
    (v.nanos() >= 0).then(|| v.value())
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
