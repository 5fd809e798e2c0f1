//! Quantities as metrics-server writes them: CPU in nanocores (`250m`, `1234n`) and memory
//! in bytes with binary suffixes (`1532Ki`), each in its canonical form.

/// CPU from nanocores: whole cores, millicores when exact, else nanocores.
pub fn cpu(nano_cores: u64) -> String {
    if nano_cores.is_multiple_of(1_000_000_000) {
        format!("{}", nano_cores / 1_000_000_000)
    } else if nano_cores.is_multiple_of(1_000_000) {
        format!("{}m", nano_cores / 1_000_000)
    } else if nano_cores.is_multiple_of(1_000) {
        format!("{}u", nano_cores / 1_000)
    } else {
        format!("{nano_cores}n")
    }
}

/// Memory from bytes with the largest binary suffix that divides it exactly.
pub fn memory(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (shift, suffix) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(cpu(0), "0");
        assert_eq!(cpu(2_000_000_000), "2");
        assert_eq!(cpu(250_000_000), "250m");
        assert_eq!(cpu(1_500), "1500n");
        assert_eq!(cpu(12_000), "12u");
        assert_eq!(cpu(123_456_789), "123456789n");
        assert_eq!(memory(0), "0");
        assert_eq!(memory(1536 * 1024), "1536Ki");
        assert_eq!(memory(8 << 20), "8Mi");
        assert_eq!(memory(1000), "1000");
    }
}
