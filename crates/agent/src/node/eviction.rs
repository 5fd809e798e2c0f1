//! Hard eviction thresholds, as the kubelet's `--eviction-hard`
//! (`memory.available<100Mi,nodefs.available<10%`): the pressure conditions turn True when
//! a signal falls below its threshold, and allocatable is capacity minus the thresholds.
//!
//! Flotilla keeps images and pod data under one data dir, so `imagefs.available` measures
//! the same filesystem as `nodefs.available`: both are checked against it, and allocatable
//! keeps back the larger. The kubelet has no default PID threshold; Flotilla's default reports PIDPressure
//! when fewer than 10% of `pid_max` process IDs remain.

use std::fmt;

use super::machine::{FsUsage, MemInfo, PidUsage};

/// One signal's threshold: an absolute amount, or a share of the signal's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// In the signal's unit: bytes, or process IDs for `pid.available`.
    Amount(u64),
    /// Hundredths of a percent, so that `7.5%` is exact and the config stays `Eq`.
    BasisPoints(u32),
}

impl Threshold {
    /// The threshold in units of the signal, for a signal whose capacity is `capacity`.
    pub fn amount(self, capacity: u64) -> u64 {
        match self {
            Threshold::Amount(n) => n,
            Threshold::BasisPoints(bp) => {
                (u128::from(capacity) * u128::from(bp) / 10_000).min(u128::from(u64::MAX)) as u64
            }
        }
    }

    /// Whether `available` out of `capacity` is below the threshold.
    pub fn crossed(self, available: u64, capacity: u64) -> bool {
        available < self.amount(capacity)
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Amount(n) => write!(f, "{n}"),
            Threshold::BasisPoints(bp) if bp % 100 == 0 => write!(f, "{}%", bp / 100),
            Threshold::BasisPoints(bp) => write!(f, "{}%", f64::from(*bp) / 100.0),
        }
    }
}

/// The thresholds the node enforces; `None` leaves a signal unwatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionThresholds {
    pub memory_available: Option<Threshold>,
    pub nodefs_available: Option<Threshold>,
    pub imagefs_available: Option<Threshold>,
    pub pid_available: Option<Threshold>,
}

impl Default for EvictionThresholds {
    fn default() -> Self {
        EvictionThresholds {
            memory_available: Some(Threshold::Amount(100 << 20)),
            nodefs_available: Some(Threshold::BasisPoints(1_000)),
            imagefs_available: None,
            pid_available: Some(Threshold::BasisPoints(1_000)),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThresholdError {
    #[error("{0:?}: expected SIGNAL<QUANTITY or SIGNAL<PERCENT%")]
    Syntax(String),
    #[error(
        "{0:?}: unsupported signal (memory.available, nodefs.available, imagefs.available and pid.available are)"
    )]
    Signal(String),
    #[error("{0:?}: a percentage must be between 0% and 100%")]
    Percent(String),
    #[error("{0:?}: not a non-negative quantity")]
    Quantity(String),
    #[error("{0:?} is given twice")]
    Duplicate(String),
}

impl EvictionThresholds {
    /// Parses the kubelet's `--eviction-hard` value. Signals not named keep no threshold,
    /// as with the kubelet, where giving the flag replaces the whole default set.
    pub fn parse(spec: &str) -> Result<Self, ThresholdError> {
        let mut out = EvictionThresholds {
            memory_available: None,
            nodefs_available: None,
            imagefs_available: None,
            pid_available: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (signal, value) = item
                .split_once('<')
                .map(|(s, v)| (s.trim(), v.trim()))
                .ok_or_else(|| ThresholdError::Syntax(item.to_string()))?;
            if seen.contains(&signal) {
                return Err(ThresholdError::Duplicate(signal.to_string()));
            }
            seen.push(signal);
            let threshold = parse_value(item, value)?;
            match signal {
                "memory.available" => out.memory_available = Some(threshold),
                "nodefs.available" => out.nodefs_available = Some(threshold),
                "imagefs.available" => out.imagefs_available = Some(threshold),
                "pid.available" => out.pid_available = Some(threshold),
                _ => return Err(ThresholdError::Signal(signal.to_string())),
            }
        }
        Ok(out)
    }

    pub fn memory_pressure(&self, m: MemInfo) -> bool {
        self.memory_available
            .is_some_and(|t| t.crossed(m.available_bytes, m.total_bytes))
    }

    pub fn disk_pressure(&self, d: FsUsage) -> bool {
        [self.nodefs_available, self.imagefs_available]
            .into_iter()
            .flatten()
            .any(|t| t.crossed(d.available_bytes, d.capacity_bytes))
    }

    pub fn pid_pressure(&self, p: PidUsage) -> bool {
        p.max == 0
            || self
                .pid_available
                .is_some_and(|t| t.crossed(p.max.saturating_sub(p.used), p.max))
    }

    /// Memory kept back from allocatable out of `capacity` bytes.
    pub fn reserved_memory(&self, capacity: u64) -> u64 {
        self.memory_available
            .map_or(0, |t| t.amount(capacity).min(capacity))
    }

    /// Ephemeral storage kept back from allocatable out of `capacity` bytes.
    pub fn reserved_storage(&self, capacity: u64) -> u64 {
        [self.nodefs_available, self.imagefs_available]
            .into_iter()
            .flatten()
            .map(|t| t.amount(capacity).min(capacity))
            .max()
            .unwrap_or(0)
    }
}

impl fmt::Display for EvictionThresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("memory.available", self.memory_available),
            ("nodefs.available", self.nodefs_available),
            ("imagefs.available", self.imagefs_available),
            ("pid.available", self.pid_available),
        ]
        .into_iter()
        .filter_map(|(s, t)| t.map(|t| format!("{s}<{t}")))
        .collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_value(item: &str, value: &str) -> Result<Threshold, ThresholdError> {
    if let Some(p) = value.strip_suffix('%') {
        let pct: f64 = p
            .trim()
            .parse()
            .map_err(|_| ThresholdError::Percent(item.to_string()))?;
        if !pct.is_finite() || !(0.0..=100.0).contains(&pct) {
            return Err(ThresholdError::Percent(item.to_string()));
        }
        return Ok(Threshold::BasisPoints((pct * 100.0).round() as u32));
    }
    let q = api::quantity::parse(value).map_err(|_| ThresholdError::Quantity(item.to_string()))?;
    let nanos = q.nanos();
    if nanos < 0 {
        return Err(ThresholdError::Quantity(item.to_string()));
    }
    // Round up: a fractional byte still has to be free.
    let whole = nanos.saturating_add(999_999_999) / 1_000_000_000;
    Ok(Threshold::Amount(u64::try_from(whole).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_kubelets_plus_a_pid_floor() {
        let d = EvictionThresholds::default();
        assert_eq!(
            d.to_string(),
            "memory.available<104857600,nodefs.available<10%,pid.available<10%"
        );
        assert_eq!(EvictionThresholds::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn parses_quantities_and_percentages() {
        let t = EvictionThresholds::parse("memory.available<1.5Gi, nodefs.available<7.5%").unwrap();
        assert_eq!(t.memory_available, Some(Threshold::Amount(1536 << 20)));
        assert_eq!(t.nodefs_available, Some(Threshold::BasisPoints(750)));
        assert_eq!(t.pid_available, None, "unnamed signals are unwatched");
        assert_eq!(
            EvictionThresholds::parse("pid.available<500")
                .unwrap()
                .pid_available,
            Some(Threshold::Amount(500))
        );
        assert_eq!(
            EvictionThresholds::parse("").unwrap(),
            EvictionThresholds {
                memory_available: None,
                nodefs_available: None,
                imagefs_available: None,
                pid_available: None
            }
        );
    }

    #[test]
    fn imagefs_is_the_data_dir_too_and_both_thresholds_hold() {
        let t = EvictionThresholds::parse("nodefs.available<10%,imagefs.available<50Gi").unwrap();
        let disk = |avail_gib: u64| FsUsage {
            capacity_bytes: 100 << 30,
            available_bytes: avail_gib << 30,
        };
        // 40 GiB free: above 10%, below 50Gi.
        assert!(t.disk_pressure(disk(40)));
        assert!(!t.disk_pressure(disk(60)));
        assert_eq!(t.reserved_storage(100 << 30), 50 << 30);
        assert_eq!(
            t.to_string(),
            "nodefs.available<10%,imagefs.available<53687091200"
        );
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        use ThresholdError::*;
        let e = |s: &str| EvictionThresholds::parse(s).unwrap_err();
        assert_eq!(
            e("memory.available=1Gi"),
            Syntax("memory.available=1Gi".into())
        );
        assert_eq!(e("cpu.available<1"), Signal("cpu.available".into()));
        assert_eq!(
            e("nodefs.available<101%"),
            Percent("nodefs.available<101%".into())
        );
        assert_eq!(
            e("nodefs.available<x%"),
            Percent("nodefs.available<x%".into())
        );
        assert_eq!(
            e("memory.available<-1Gi"),
            Quantity("memory.available<-1Gi".into())
        );
        assert_eq!(
            e("memory.available<lots"),
            Quantity("memory.available<lots".into())
        );
        assert_eq!(
            e("memory.available<1Gi,memory.available<2Gi"),
            Duplicate("memory.available".into())
        );
    }

    #[test]
    fn pressure_is_a_signal_below_its_threshold() {
        let t = EvictionThresholds::default();
        let mem = |avail| MemInfo {
            total_bytes: 8 << 30,
            available_bytes: avail,
        };
        assert!(t.memory_pressure(mem(99 << 20)));
        assert!(!t.memory_pressure(mem(100 << 20)));
        let fs = |avail| FsUsage {
            capacity_bytes: 1000,
            available_bytes: avail,
        };
        assert!(t.disk_pressure(fs(99)));
        assert!(!t.disk_pressure(fs(100)));
        let pids = |used| PidUsage { used, max: 1000 };
        assert!(t.pid_pressure(pids(901)));
        assert!(!t.pid_pressure(pids(900)));
        assert!(t.pid_pressure(PidUsage { used: 0, max: 0 }));
        let none = EvictionThresholds::parse("").unwrap();
        assert!(!none.memory_pressure(mem(0)) && !none.disk_pressure(fs(0)));
    }

    #[test]
    fn reservations_never_exceed_capacity() {
        let t = EvictionThresholds::parse("memory.available<2Gi,nodefs.available<10%").unwrap();
        assert_eq!(t.reserved_memory(1 << 30), 1 << 30);
        assert_eq!(t.reserved_memory(8 << 30), 2 << 30);
        assert_eq!(t.reserved_storage(1000), 100);
        assert_eq!(
            EvictionThresholds::parse("")
                .unwrap()
                .reserved_storage(1000),
            0
        );
    }
}
