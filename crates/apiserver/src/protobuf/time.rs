//! Time and Duration in the JSON forms Go's apimachinery gives them.

use serde_json::Value;

use super::ProtobufError;

/// meta/v1 Time (RFC 3339, whole seconds) or MicroTime (six fractional digits), in UTC.
/// The zero time (0 s, 0 ns on the wire) is JSON null, as Go marshals it.
pub fn render(seconds: i64, nanos: i32, micro: bool) -> Result<Value, ProtobufError> {
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let ts =
        jiff::Timestamp::new(seconds, nanos).map_err(|_| ProtobufError::Time { seconds, nanos })?;
    let text = if micro {
        ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    Ok(Value::String(text))
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, scale) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, scale));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = n / 60_000_000_000 % 60;
    let seconds = fraction(n % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}s"),
        (0, m) => format!("{sign}{m}m{seconds}s"),
        (h, m) => format!("{sign}{h}h{m}m{seconds}s"),
    }
}

/// `n / scale` with the fraction's trailing zeros dropped ("1.5", "2").
fn fraction(n: u64, scale: u64) -> String {
    let whole = n / scale;
    let rest = n % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_like_go() {
        assert_eq!(render(0, 0, false).unwrap(), Value::Null);
        assert_eq!(
            render(1_700_000_000, 123_456_789, false).unwrap(),
            Value::String("2023-11-14T22:13:20Z".into())
        );
        assert_eq!(
            render(1_700_000_000, 123_456_789, true).unwrap(),
            Value::String("2023-11-14T22:13:20.123456Z".into())
        );
        assert_eq!(
            render(1_700_000_000, 0, true).unwrap(),
            Value::String("2023-11-14T22:13:20.000000Z".into())
        );
        assert!(render(i64::MAX, 0, false).is_err());
    }

    #[test]
    fn durations_render_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (2_000_000, "2ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-5_000_000_000, "-5s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }
}
