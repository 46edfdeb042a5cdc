//! Parsing the values inside rules: string patterns, principals, IP blocks, ports, and `when`
//! conditions. Each refusal names the exact list element.

use std::{net::IpAddr, str::FromStr};

use ipnet::IpNet;

use super::{Cx, document::Scalar};
use crate::authz::{
    condition::{Condition, ConditionKey, ValueKind, Values},
    error::PolicyError,
    pattern::StringPattern,
};

impl Cx {
    /// String patterns; empty strings are refused, as Istio does (`*` means "any").
    pub(super) fn patterns(
        &self,
        path: &str,
        values: Option<Vec<String>>,
    ) -> Result<Vec<StringPattern>, PolicyError> {
        let values = values.unwrap_or_default();
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if v.is_empty() {
                    Err(self.invalid(
                        format!("{path}[{i}]"),
                        "empty value not allowed (use \"*\" to match any value)",
                    ))
                } else {
                    Ok(StringPattern::parse(v))
                }
            })
            .collect()
    }

    /// Peer principals. Istio writes them without `spiffe://` and compares them with the
    /// scheme put back, so `spiffe://...` in a policy could never match: refused, with the fix.
    pub(super) fn principals(
        &self,
        path: &str,
        values: Option<Vec<String>>,
    ) -> Result<Vec<StringPattern>, PolicyError> {
        let values = values.unwrap_or_default();
        for (i, v) in values.iter().enumerate() {
            if let Some(rest) = v.strip_prefix("spiffe://") {
                return Err(self.invalid(
                    format!("{path}[{i}]"),
                    format!(
                        "principals are written without \"spiffe://\" (Istio adds it back when \
                         comparing), so {v:?} could never match; write {rest:?}"
                    ),
                ));
            }
        }
        self.patterns(path, Some(values))
    }

    /// IP addresses and CIDR ranges (`10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`).
    pub(super) fn ips(
        &self,
        path: &str,
        values: Option<Vec<String>>,
    ) -> Result<Vec<IpNet>, PolicyError> {
        let values = values.unwrap_or_default();
        let strings: Vec<&str> = values.iter().map(String::as_str).collect();
        self.ip_strs(path, &strings)
    }

    fn ip_strs(&self, path: &str, values: &[&str]) -> Result<Vec<IpNet>, PolicyError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_ip_block(v).map_err(|reason| self.invalid(format!("{path}[{i}]"), reason))
            })
            .collect()
    }

    /// Port numbers, written as strings (`"8080"`) or integers.
    pub(super) fn ports(
        &self,
        path: &str,
        values: Option<Vec<Scalar>>,
    ) -> Result<Vec<u16>, PolicyError> {
        let values = values.unwrap_or_default();
        let strings: Vec<&str> = values.iter().map(|s| s.0.as_str()).collect();
        self.port_strs(path, &strings)
    }

    fn port_strs(&self, path: &str, values: &[&str]) -> Result<Vec<u16>, PolicyError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                parse_port(v).map_err(|reason| self.invalid(format!("{path}[{i}]"), reason))
            })
            .collect()
    }

    /// One `when` entry. `path` is `spec.rules[i].when[j]`.
    pub(super) fn condition(
        &self,
        path: &str,
        key: Option<String>,
        values: Option<Vec<Scalar>>,
        not_values: Option<Vec<Scalar>>,
    ) -> Result<Condition, PolicyError> {
        let key_text = key.unwrap_or_default();
        if key_text.is_empty() {
            return Err(self.invalid(format!("{path}.key"), "`key` must not be empty"));
        }
        let key =
            ConditionKey::parse(&key_text).map_err(|e| self.invalid(format!("{path}.key"), e.0))?;
        let values = values.unwrap_or_default();
        let not_values = not_values.unwrap_or_default();
        if values.is_empty() && not_values.is_empty() {
            return Err(self.invalid(
                path,
                format!("at least one of `values` or `notValues` must be set for key {key_text}"),
            ));
        }
        Ok(Condition {
            values: self.condition_values(&format!("{path}.values"), &key, &values)?,
            not_values: self.condition_values(&format!("{path}.notValues"), &key, &not_values)?,
            key,
        })
    }

    fn condition_values(
        &self,
        path: &str,
        key: &ConditionKey,
        values: &[Scalar],
    ) -> Result<Values, PolicyError> {
        let strings: Vec<&str> = values.iter().map(|s| s.0.as_str()).collect();
        if let Some(i) = strings.iter().position(|s| s.is_empty()) {
            return Err(self.invalid(format!("{path}[{i}]"), "empty value not allowed"));
        }
        Ok(match key.value_kind() {
            ValueKind::Ip => Values::Ips(self.ip_strs(path, &strings)?),
            ValueKind::Port => Values::Ports(self.port_strs(path, &strings)?),
            ValueKind::String if *key == ConditionKey::SourcePrincipal => {
                Values::Strings(self.principals(
                    path,
                    Some(strings.iter().map(|s| (*s).to_owned()).collect()),
                )?)
            }
            ValueKind::String => {
                Values::Strings(strings.iter().map(|s| StringPattern::parse(s)).collect())
            }
        })
    }
}

/// Reads an address (a single host) or a CIDR range, as Istio's `ValidateIPs` accepts them.
fn parse_ip_block(value: &str) -> Result<IpNet, String> {
    if value.contains('/') {
        IpNet::from_str(value).map_err(|_| {
            format!("bad CIDR range {value:?}: expected ADDRESS/PREFIX such as 10.0.0.0/8")
        })
    } else {
        IpAddr::from_str(value)
            .map(IpNet::from)
            .map_err(|_| format!("bad IP address {value:?}: expected an address or CIDR range"))
    }
}

/// Reads a port as Istio does: decimal digits, at most 65535.
fn parse_port(value: &str) -> Result<u16, String> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| value.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| format!("bad port {value:?}: expected a number from 0 to 65535"))
}

#[cfg(test)]
mod tests {
    use super::{parse_ip_block, parse_port};

    #[test]
    fn ports_are_decimal_and_in_range() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert_eq!(parse_port("0"), Ok(0));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["65536", "http", "", "-1", "+80", " 80", "8080.0"] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_blocks_take_addresses_and_ranges() {
        assert_eq!(
            parse_ip_block("10.0.0.1").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(parse_ip_block("10.1.0.0/16").unwrap().prefix_len(), 16);
        assert_eq!(parse_ip_block("2001:db8::/32").unwrap().prefix_len(), 32);
        assert_eq!(parse_ip_block("::1").unwrap().prefix_len(), 128);
        for bad in ["10.0.0.0/33", "10.0.0", "example.com", "10.0.0.0/", "/8"] {
            assert!(parse_ip_block(bad).is_err(), "{bad:?}");
        }
    }
}
