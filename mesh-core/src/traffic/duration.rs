//! Durations as Istio resources write them: `1.5s`, `100ms`, `2m`, `1h30m`.
//!
//! Kubernetes validates Istio's duration fields with Go's `time.ParseDuration` grammar (a
//! sequence of decimal numbers, each with a unit: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), which
//! also covers protobuf's JSON form (`"1.5s"`). istiod then requires at least one millisecond
//! and whole milliseconds. [`parse_duration`] applies both, so a value this mesh accepts is one
//! Istio accepts, and means the same.

use std::time::Duration;

use thiserror::Error;

/// How a valid duration looks; every error ends with it.
const HINT: &str = "write a number with a unit (ms, s, m, h), such as 250ms, 1.5s or 2m";

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is empty.
    #[error("the duration is empty; {HINT}")]
    Empty,
    /// A minus sign: no Istio duration may be negative.
    #[error("{0:?} is negative; {HINT}")]
    Negative(String),
    /// Not a sequence of numbers with units.
    #[error("{text:?} is not a duration ({problem}); {HINT}")]
    Syntax {
        /// The value as written.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Too large to represent.
    #[error("{0:?} is too long a duration")]
    Overflow(String),
    /// Below Istio's minimum of one millisecond.
    #[error("{0:?} is shorter than 1ms, the smallest duration Istio accepts")]
    TooShort(String),
    /// Finer than a millisecond.
    #[error(
        "{0:?} is not a whole number of milliseconds; Istio supports durations to ms precision"
    )]
    SubMillisecond(String),
}

/// Parses an Istio duration: Go's grammar, at least 1 ms, whole milliseconds.
///
/// ```
/// use std::time::Duration;
/// use mesh_core::traffic::parse_duration;
///
/// assert_eq!(parse_duration("1.5s")?, Duration::from_millis(1500));
/// assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
/// assert!(parse_duration("0s").is_err());
/// assert!(parse_duration("10").is_err()); // a unit is required
/// # Ok::<(), mesh_core::traffic::DurationError>(())
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let duration = parse_go_duration(text)?;
    if duration < Duration::from_millis(1) {
        return Err(DurationError::TooShort(text.to_owned()));
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond(text.to_owned()));
    }
    Ok(duration)
}

/// [`parse_duration`], except that a zero duration (`0s`, `0`) is accepted: istiod allows it
/// where zero switches a timeout off (`connectionPool.tcp.idleTimeout`).
pub(crate) fn parse_duration_or_zero(text: &str) -> Result<Duration, DurationError> {
    if parse_go_duration(text)? == Duration::ZERO {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// Go's `time.ParseDuration`, without the sign (negative durations are refused).
fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = |problem: &str| DurationError::Syntax {
        text: text.to_owned(),
        problem: problem.to_owned(),
    };
    let mut rest = text;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if rest.starts_with('-') {
        return Err(DurationError::Negative(text.to_owned()));
    }
    if rest.is_empty() {
        return Err(if text.is_empty() {
            DurationError::Empty
        } else {
            syntax("no number")
        });
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(syntax("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(syntax("missing unit")),
            other => return Err(syntax(&format!("unknown unit {other:?}"))),
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut frac_nanos: u128 = 0;
        let mut divisor: u128 = 1;
        for digit in frac_part.bytes().take(30) {
            frac_nanos = frac_nanos * 10 + u128::from(digit - b'0');
            divisor *= 10;
        }
        let value = int
            .checked_mul(scale)
            .and_then(|v| v.checked_add(frac_nanos * scale / divisor))
            .ok_or_else(overflow)?;
        total = total.checked_add(value).ok_or_else(overflow)?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow(text.to_owned()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration the way Istio documents write them (`1.5s`, `100ms`, `2m`, `1h30m`).
pub fn format_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis == 0 {
        return format!("{}ns", d.as_nanos());
    }
    if millis % 1000 != 0 {
        return if millis < 1000 {
            format!("{millis}ms")
        } else {
            let fraction = format!("{:03}", millis % 1000);
            format!("{}.{}s", millis / 1000, fraction.trim_end_matches('0'))
        };
    }
    let secs = millis / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn go_grammar() {
        for (text, expected) in [
            ("1.5s", ms(1500)),
            ("100ms", ms(100)),
            ("2m", ms(120_000)),
            ("1h30m", ms(5_400_000)),
            ("1h0m0.5s", ms(3_600_500)),
            (".5s", ms(500)),
            ("1.s", ms(1000)),
            ("+3s", ms(3000)),
            ("1000000us", ms(1000)),
            ("2000000ns", ms(2)),
            ("1\u{b5}s1ms", Duration::from_nanos(1_001_000)),
        ] {
            assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
        }
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn zero_only_where_it_switches_a_timeout_off() {
        for zero in ["0", "0s", "0ms", "0h0m"] {
            assert_eq!(parse_duration_or_zero(zero), Ok(Duration::ZERO), "{zero}");
            assert!(parse_duration(zero).is_err(), "{zero}");
        }
        assert_eq!(parse_duration_or_zero("300ms"), Ok(ms(300)));
        assert!(matches!(
            parse_duration_or_zero("500us"),
            Err(DurationError::TooShort(_))
        ));
        assert!(matches!(
            parse_duration_or_zero("-0s"),
            Err(DurationError::Negative(_))
        ));
    }

    #[test]
    fn istio_rules() {
        assert_eq!(parse_duration("1ms"), Ok(ms(1)));
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::TooShort(_))
        ));
        assert!(matches!(
            parse_duration("0"),
            Err(DurationError::TooShort(_))
        ));
        assert!(matches!(
            parse_duration("1500us"),
            Err(DurationError::SubMillisecond(_))
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
    }

    #[test]
    fn malformed() {
        for text in [
            "10", "s", "1x", "1.5", "1 s", "1s ", "..s", "1d", "1e3s", "+",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                matches!(err, DurationError::Syntax { .. }),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains("such as"), "{err}");
        }
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formatting_round_trips() {
        for (d, text) in [
            (ms(1500), "1.5s"),
            (ms(100), "100ms"),
            (ms(120_000), "2m"),
            (ms(5_400_000), "1h30m"),
            (ms(10_000), "10s"),
            (ms(1250), "1.25s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }
}
