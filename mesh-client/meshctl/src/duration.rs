//! Durations as operators type them (`90s`, `30m`, `24h`, `7d`, `1h30m`) and as meshctl prints
//! them (`23h 59m`).
//!
//! A small grammar of our own rather than a dependency: four units cover certificate lifetimes,
//! and the error messages can say exactly what a valid value looks like.

use std::time::Duration;

use thiserror::Error;

/// What a valid duration looks like; every parse error ends with it, since the operator will
/// retype the value.
const HINT: &str = "use a whole number followed by s, m, h or d, such as 90s, 30m, 24h or 7d";

/// Why a duration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum DurationError {
    /// Nothing was given.
    #[error("the duration is empty; {}", HINT)]
    Empty,
    /// A minus sign: a lifetime cannot run backwards.
    #[error("the duration cannot be negative; {}", HINT)]
    Negative,
    /// A unit (or other text) came without a number before it.
    #[error("expected a number at {at:?}; {}", HINT)]
    MissingNumber {
        /// The unparsed rest of the input.
        at: String,
    },
    /// A number came without a unit after it; seconds are not assumed, as `24` more likely
    /// meant hours.
    #[error("{number} has no unit; {}", HINT)]
    MissingUnit {
        /// The number as written.
        number: String,
    },
    /// The unit is not one of `s`, `m`, `h`, `d`.
    #[error("unknown unit {unit:?}; {}", HINT)]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// The total is zero, which would give a certificate that is never valid.
    #[error("the duration must be longer than zero; {}", HINT)]
    Zero,
    /// The total does not fit in 64 bits of seconds.
    #[error("the duration is too long")]
    TooLong,
}

/// Parses one or more `<number><unit>` pairs (`90s`, `1h30m`) into their sum.
pub(crate) fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input.starts_with('-') {
        return Err(DurationError::Negative);
    }
    let mut total: u64 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::MissingNumber {
                at: rest.to_owned(),
            });
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 60 * 60,
            "d" => 24 * 60 * 60,
            "" => {
                return Err(DurationError::MissingUnit {
                    number: number.to_owned(),
                });
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_owned(),
                });
            }
        };
        // Only ASCII digits remain, so the parse can fail only by overflowing.
        let count: u64 = number.parse().map_err(|_| DurationError::TooLong)?;
        total = count
            .checked_mul(seconds_per_unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or(DurationError::TooLong)?;
        rest = next;
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration for people: the two most significant units, such as `6d 23h`, `23h 59m`,
/// `59m 58s` or `42s`. Precision beyond that does not matter when judging a certificate's life.
pub(crate) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return "0s".to_owned();
    };
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit_and_combinations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d0h1s"), Ok(Duration::from_secs(86_401)));
    }

    #[test]
    fn rejects_malformed_input_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(
            parse_duration("24"),
            Err(DurationError::MissingUnit {
                number: "24".into()
            })
        );
        assert_eq!(
            parse_duration("5x"),
            Err(DurationError::UnknownUnit { unit: "x".into() })
        );
        assert_eq!(
            parse_duration("1 h"),
            Err(DurationError::UnknownUnit { unit: " h".into() })
        );
        assert_eq!(
            parse_duration("h"),
            Err(DurationError::MissingNumber { at: "h".into() })
        );
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(
            parse_duration("5s-"),
            Err(DurationError::UnknownUnit { unit: "s-".into() })
        );
        assert_eq!(parse_duration("0s"), Err(DurationError::Zero));
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            parse_duration("999999999999999999d"),
            Err(DurationError::TooLong)
        );
        let message = parse_duration("5x").unwrap_err().to_string();
        assert!(message.contains("24h"), "{message}");
    }

    #[test]
    fn formats_the_two_largest_units() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(42)), "42s");
        assert_eq!(format_duration(Duration::from_secs(3598)), "59m 58s");
        assert_eq!(format_duration(Duration::from_secs(86_340)), "23h 59m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(86_400 + 59)), "1d");
        assert_eq!(
            format_duration(Duration::from_secs(7 * 86_400 - 1)),
            "6d 23h"
        );
    }
}
