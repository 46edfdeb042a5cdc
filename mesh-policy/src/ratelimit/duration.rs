//! Durations written as Go and Istio write them: `1s`, `500ms`, `1m30s`, `1.5h`.

use std::time::Duration;

/// Parses a Go-style duration: one or more `<decimal><unit>` terms with units `ns`, `us`
/// (or `µs`), `ms`, `s`, `m`, `h`. No sign and no bare numbers: `fill_interval: 1` is
/// ambiguous, so it is refused with the fix in the message.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let fail = || {
        format!(
            "bad duration {text:?}: expected a number with a unit (ns, us, ms, s, m, h), such as \
             \"1s\", \"250ms\" or \"1m30s\""
        )
    };
    if text.is_empty() {
        return Err(fail());
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(fail)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(fail()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(fail());
        }
        // Long digit strings would overflow long before they mattered: 30 digits is plenty.
        if whole.len() > 30 || fraction.len() > 30 {
            return Err(fail());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| fail())?
        };
        let mut term = whole.checked_mul(unit_nanos).ok_or_else(fail)?;
        if !fraction.is_empty() {
            let digits: u128 = fraction.parse().map_err(|_| fail())?;
            let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| fail())?);
            term = term
                .checked_add(digits.checked_mul(unit_nanos).ok_or_else(fail)? / scale)
                .ok_or_else(fail)?;
        }
        total = total.checked_add(term).ok_or_else(fail)?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| fail())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1.5h"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "1",
            "s",
            "1x",
            "-1s",
            "1.2.3s",
            ".s",
            "1 s",
            "1s ",
            "99999999999999999999h",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("such as \"1s\""), "{bad:?}: {err}");
        }
    }
}
