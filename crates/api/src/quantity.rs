//! Resource quantities (`100m`, `1.5Gi`, `2e3`), parsed exactly as Kubernetes'
//! `resource.Quantity` reads them, for every component that does arithmetic on them: the
//! scheduler's fit checks, the agent's cgroup limits and downward API, node capacity.
//!
//! A quantity is held as an exact count of nano-units in an i128, which covers every value
//! Kubernetes accepts (up to 2^63 base units) with nine decimal places, so `0.1` + `0.2` is
//! `0.3` here, and rounding happens only where Kubernetes rounds: `value()` and
//! `milli_value()` round up, as `Quantity.Value()` and `MilliValue()` do.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)]
pub struct QuantityError;

/// A parsed quantity in nano-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn from_nanos(nanos: i128) -> Self {
        Quantity { nanos }
    }

    pub fn from_milli(milli: i64) -> Self {
        Quantity {
            nanos: i128::from(milli) * 1_000_000,
        }
    }

    pub fn from_value(value: i64) -> Self {
        Quantity {
            nanos: i128::from(value) * NANO,
        }
    }

    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Whole units, rounded up (away from zero for positives), like `Quantity.Value()`.
    pub fn value(self) -> i64 {
        clamp(div_ceil(self.nanos, NANO))
    }

    /// Thousandths, rounded up, like `Quantity.MilliValue()` (CPU in millicores).
    pub fn milli_value(self) -> i64 {
        clamp(div_ceil(self.nanos, 1_000_000))
    }

    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(o.nanos),
        }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, o: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_sub(o.nanos),
        }
    }
}

impl std::ops::AddAssign for Quantity {
    fn add_assign(&mut self, o: Quantity) {
        self.nanos = self.nanos.saturating_add(o.nanos);
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, QuantityError> {
        parse(s)
    }
}

impl fmt::Display for Quantity {
    /// A canonical-enough rendering: whole units when exact, else millis, else nanos.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANO == 0 {
            write!(f, "{}", self.nanos / NANO)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

/// Parses a quantity string; see the module docs.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    let s = s.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(QuantityError);
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // Digits beyond nano precision are dropped after rounding up, as Kubernetes rounds.
    let mut nanos: i128 = 0;
    for c in int_part.bytes() {
        nanos = nanos
            .checked_mul(10)
            .and_then(|n| n.checked_add(i128::from(c - b'0')))
            .ok_or(QuantityError)?;
    }
    // Keep the fraction as numerator/denominator so a suffix's scale applies exactly.
    let mut frac_num: i128 = 0;
    let mut frac_den: i128 = 1;
    for c in frac_part.bytes().take(30) {
        frac_num = frac_num * 10 + i128::from(c - b'0');
        frac_den *= 10;
    }
    let (mul, div) = scale(suffix)?;
    let whole = nanos
        .checked_mul(NANO)
        .and_then(|n| n.checked_mul(mul))
        .ok_or(QuantityError)?
        / div;
    let frac = div_ceil(
        frac_num
            .checked_mul(NANO)
            .and_then(|n| n.checked_mul(mul))
            .ok_or(QuantityError)?,
        frac_den.checked_mul(div).ok_or(QuantityError)?,
    );
    let total = whole.checked_add(frac).ok_or(QuantityError)?;
    Ok(Quantity {
        nanos: if negative { -total } else { total },
    })
}

/// The suffix as an exact multiplier / divisor of base units.
fn scale(suffix: &str) -> Result<(i128, i128), QuantityError> {
    let p = |e: u32| 10i128.pow(e);
    Ok(match suffix {
        "" => (1, 1),
        "n" => (1, p(9)),
        "u" => (1, p(6)),
        "m" => (1, p(3)),
        "k" => (p(3), 1),
        "M" => (p(6), 1),
        "G" => (p(9), 1),
        "T" => (p(12), 1),
        "P" => (p(15), 1),
        "E" => (p(18), 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(QuantityError)?;
            let e: i32 = exp.parse().map_err(|_| QuantityError)?;
            if !(-9..=18).contains(&e) {
                return Err(QuantityError);
            }
            if e >= 0 {
                (p(e.unsigned_abs()), 1)
            } else {
                (1, p(e.unsigned_abs()))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse(s).unwrap()
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(q("100m").milli_value(), 100);
        assert_eq!(q("0.1").milli_value(), 100);
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("250u").milli_value(), 1, "rounds up like MilliValue");
        assert_eq!(q("2e3").value(), 2000);
        assert_eq!(q("1E-3").milli_value(), 1);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("0.5").value(), 1, "Value() rounds up");
    }

    #[test]
    fn exact_sums_and_signs() {
        assert_eq!(q("0.1") + q("0.2"), q("0.3"));
        assert_eq!(q("-1").value(), -1);
        assert_eq!(q("+2").value(), 2);
        assert_eq!((q("1") - q("300m")).milli_value(), 700);
    }

    #[test]
    fn bad_input_is_an_error() {
        for s in [
            "", "m", "1.2.3", "1x", "Mi", "1e", "1e99", ".", "--1", "1 Mi",
        ] {
            assert!(parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn huge_values_do_not_overflow_silently() {
        assert!(parse("9999999999999999999999999999999999Ei").is_err());
        assert_eq!(q("8Ei").value(), i64::MAX, "clamped like Value()");
    }

    #[test]
    fn display_round_trips() {
        for s in ["3", "250m", "7n"] {
            assert_eq!(q(s).to_string(), s);
        }
    }
}
