//! Ages as Kubernetes prints them (apimachinery's `duration.HumanDuration`): two significant
//! units at most, coarser the older the thing is ("45s", "3m2s", "15m", "4h", "2d3h", "30d",
//! "2y15d", "9y").

use jiff::{SignedDuration, Timestamp};

/// Formats `d` like `duration.HumanDuration`. Up to one second in the future counts as now
/// ("0s"), to tolerate clock skew between machines; further in the future is `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    // Go converts with truncation toward zero at every step; `as_secs` does the same.
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            dy => format!("{years}y{dy}d"),
        };
    }
    format!("{years}y")
}

/// The time elapsed from `then` to `now`, or `<unknown>` when there is no time
/// (Kubernetes' `translateTimestampSince` of a zero time).
pub fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> String {
        human_duration(SignedDuration::from_secs(s))
    }

    #[test]
    fn seconds_and_minutes() {
        assert_eq!(secs(0), "0s");
        assert_eq!(secs(5), "5s");
        assert_eq!(secs(119), "119s");
        assert_eq!(secs(120), "2m");
        assert_eq!(secs(182), "3m2s");
        assert_eq!(secs(9 * 60 + 59), "9m59s");
        assert_eq!(secs(10 * 60 + 30), "10m");
        assert_eq!(secs(179 * 60 + 59), "179m");
    }

    #[test]
    fn hours_days_years() {
        assert_eq!(secs(3 * 3600), "3h");
        assert_eq!(secs(4 * 3600 + 5 * 60 + 7), "4h5m");
        assert_eq!(secs(8 * 3600 + 59 * 60), "8h");
        assert_eq!(secs(47 * 3600), "47h");
        assert_eq!(secs(2 * 86400), "2d");
        assert_eq!(secs(2 * 86400 + 3 * 3600), "2d3h");
        assert_eq!(secs(8 * 86400), "8d");
        assert_eq!(secs(729 * 86400), "729d");
        assert_eq!(secs(730 * 86400), "2y");
        assert_eq!(secs(745 * 86400), "2y15d");
        assert_eq!(secs(8 * 365 * 86400 + 40 * 86400), "8y");
    }

    #[test]
    fn clock_skew_and_future() {
        assert_eq!(human_duration(SignedDuration::from_millis(-1999)), "0s");
        assert_eq!(secs(-1), "0s");
        assert_eq!(secs(-2), "<invalid>");
    }

    #[test]
    fn since_a_timestamp() {
        let then: Timestamp = "2024-01-01T00:00:00Z".parse().expect("time");
        let now: Timestamp = "2024-01-01T00:03:02.9Z".parse().expect("time");
        assert_eq!(since(Some(then), now), "3m2s");
        assert_eq!(since(None, now), "<unknown>");
    }
}
