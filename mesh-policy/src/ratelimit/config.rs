//! The rate-limit configuration file: strict YAML, validated into [`RateLimitRule`]s.

use std::{collections::BTreeMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};

use super::{
    bucket::BucketParams,
    duration::parse_duration,
    rule::{DEFAULT_MAX_KEYS, KeyPart, MissingKey, RateLimitRule, RuleMatch},
};
use crate::authz::StringPattern;

/// The most per-key buckets one rule may keep (about 100 MB of buckets at the limit).
pub const MAX_KEYS_LIMIT: usize = 1_000_000;

/// A rate-limit configuration was refused: the field path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
#[non_exhaustive]
pub struct RateLimitConfigError {
    /// The offending field, such as `rules[1].limit.fill_interval`, or `.` for the document.
    pub path: String,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl RateLimitConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path
            },
            reason: reason.into(),
        }
    }
}

/// A validated rate-limit configuration: the rules, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Every rule; a request is admitted only if every rule that matches it has a token.
    pub rules: Vec<RateLimitRule>,
}

impl RateLimitConfig {
    /// Reads and validates the YAML form (see the [module docs](super) for the schema).
    pub fn from_yaml(yaml: &str) -> Result<Self, RateLimitConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(yaml);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let reason = e.into_inner().to_string();
            // serde_yaml_ng repeats a coarser path before its message: keep the precise one.
            let reason = match reason.split_once(": ") {
                Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => {
                    rest.to_owned()
                }
                _ => reason,
            };
            RateLimitConfigError::new(path, reason)
        })?;
        Self::from_raw(raw)
    }

    /// Builds a configuration from rules made in code (names must still be unique).
    pub fn from_rules(rules: Vec<RateLimitRule>) -> Result<Self, RateLimitConfigError> {
        for (i, rule) in rules.iter().enumerate() {
            check_name(&format!("rules[{i}].name"), &rule.name)?;
            if rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(duplicate_name(i, &rule.name));
            }
        }
        Ok(Self { rules })
    }

    fn from_raw(raw: RawConfig) -> Result<Self, RateLimitConfigError> {
        let mut rules: Vec<RateLimitRule> = Vec::with_capacity(raw.rules.len());
        for (i, raw_rule) in raw.rules.into_iter().enumerate() {
            let rule = convert_rule(&format!("rules[{i}]"), raw_rule)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(duplicate_name(i, &rule.name));
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }
}

fn duplicate_name(i: usize, name: &str) -> RateLimitConfigError {
    RateLimitConfigError::new(
        format!("rules[{i}].name"),
        format!("{name:?} is used by an earlier rule; rule names must be unique"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(default, rename = "match")]
    matcher: Option<RawMatch>,
    #[serde(default)]
    key: Option<Vec<RawKeyPart>>,
    limit: RawLimit,
    #[serde(default)]
    max_keys: Option<usize>,
    #[serde(default)]
    missing_key: Option<MissingKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    path_prefixes: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    destination_ports: Vec<u16>,
    #[serde(default)]
    source_principals: Vec<String>,
    #[serde(default)]
    source_namespaces: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    max_tokens: u32,
    #[serde(default)]
    tokens_per_fill: Option<u32>,
    fill_interval: String,
}

/// A `key` entry: a bare attribute name, or `{header: NAME}`.
#[derive(Debug)]
struct RawKeyPart(KeyPart);

impl<'de> Deserialize<'de> for RawKeyPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        const NAMES: &[&str] = &[
            "source_principal",
            "source_namespace",
            "method",
            "destination_port",
            "{header: NAME}",
        ];
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = RawKeyPart;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of source_principal, source_namespace, method, destination_port or {header: NAME}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawKeyPart, E> {
                Ok(RawKeyPart(match v {
                    "source_principal" => KeyPart::SourcePrincipal,
                    "source_namespace" => KeyPart::SourceNamespace,
                    "method" => KeyPart::Method,
                    "destination_port" => KeyPart::DestinationPort,
                    other => return Err(E::unknown_variant(other, NAMES)),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawKeyPart, A::Error> {
                let Some(field) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &"{header: NAME}"));
                };
                if field != "header" {
                    return Err(de::Error::unknown_field(&field, &["header"]));
                }
                let name: String = map.next_value()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::unknown_field(&extra, &["header"]));
                }
                Ok(RawKeyPart(KeyPart::Header(name)))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

fn convert_rule(path: &str, raw: RawRule) -> Result<RateLimitRule, RateLimitConfigError> {
    let err =
        |field: &str, reason: String| RateLimitConfigError::new(format!("{path}.{field}"), reason);
    check_name(&format!("{path}.name"), &raw.name)?;
    let fill_interval =
        parse_duration(&raw.limit.fill_interval).map_err(|r| err("limit.fill_interval", r))?;
    let tokens_per_fill = raw.limit.tokens_per_fill.unwrap_or(1);
    let limit =
        BucketParams::new(raw.limit.max_tokens, tokens_per_fill, fill_interval).map_err(|e| {
            let field = match e {
                super::bucket::BucketParamsError::ZeroMaxTokens => "limit.max_tokens",
                super::bucket::BucketParamsError::ZeroTokensPerFill => "limit.tokens_per_fill",
                _ => "limit.fill_interval",
            };
            err(field, e.to_string())
        })?;
    let mut key = Vec::new();
    for (i, part) in raw.key.unwrap_or_default().into_iter().enumerate() {
        let part = part.0;
        if let KeyPart::Header(name) = &part {
            check_header_name(&format!("{path}.key[{i}].header"), name)?;
        }
        let part = match part {
            KeyPart::Header(name) => KeyPart::Header(name.to_ascii_lowercase()),
            other => other,
        };
        if key.contains(&part) {
            return Err(err(&format!("key[{i}]"), format!("{part} is listed twice")));
        }
        key.push(part);
    }
    if key.is_empty() && raw.max_keys.is_some() {
        return Err(err(
            "max_keys",
            "only meaningful with a `key`: without one the rule has a single bucket".to_owned(),
        ));
    }
    if key.is_empty() && raw.missing_key.is_some() {
        return Err(err(
            "missing_key",
            "only meaningful with a `key`".to_owned(),
        ));
    }
    let max_keys = raw.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if !(1..=MAX_KEYS_LIMIT).contains(&max_keys) {
        return Err(err(
            "max_keys",
            format!("must be between 1 and {MAX_KEYS_LIMIT}, got {max_keys}"),
        ));
    }
    Ok(RateLimitRule {
        name: raw.name,
        matcher: convert_match(&format!("{path}.match"), raw.matcher.unwrap_or_default())?,
        key,
        limit,
        max_keys,
        missing_key: raw.missing_key.unwrap_or_default(),
    })
}

fn convert_match(path: &str, raw: RawMatch) -> Result<RuleMatch, RateLimitConfigError> {
    let err =
        |field: String, reason: &str| RateLimitConfigError::new(format!("{path}.{field}"), reason);
    for (i, prefix) in raw.path_prefixes.iter().enumerate() {
        if !prefix.starts_with('/') {
            return Err(err(
                format!("path_prefixes[{i}]"),
                "a path prefix starts with `/`",
            ));
        }
    }
    for (i, method) in raw.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') {
            return Err(err(
                format!("methods[{i}]"),
                "methods are upper-case tokens such as GET or POST",
            ));
        }
    }
    for (i, port) in raw.destination_ports.iter().enumerate() {
        if *port == 0 {
            return Err(err(
                format!("destination_ports[{i}]"),
                "port 0 is never a destination",
            ));
        }
    }
    let patterns = |field: &str, values: Vec<String>, strip_scheme: bool| {
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let v = if strip_scheme {
                    v.strip_prefix("spiffe://").map(str::to_owned).unwrap_or(v)
                } else {
                    v
                };
                if v.is_empty() {
                    Err(err(
                        format!("{field}[{i}]"),
                        "empty value (use \"*\" for any)",
                    ))
                } else {
                    Ok(StringPattern::parse(&v))
                }
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut headers = Vec::new();
    for (name, value) in raw.headers {
        let field = format!("{path}.headers.{name}");
        check_header_name(&field, &name)?;
        if value.is_empty() {
            return Err(RateLimitConfigError::new(
                field,
                "empty value (use \"*\" for \"present\")",
            ));
        }
        headers.push((name.to_ascii_lowercase(), StringPattern::parse(&value)));
    }
    Ok(RuleMatch {
        source_principals: patterns("source_principals", raw.source_principals, true)?,
        source_namespaces: patterns("source_namespaces", raw.source_namespaces, false)?,
        path_prefixes: raw.path_prefixes,
        methods: raw.methods,
        destination_ports: raw.destination_ports,
        headers,
    })
}

/// Rule names appear in logs and shared counter names: `[A-Za-z0-9._-]`, 1 to 64 bytes.
fn check_name(path: &str, name: &str) -> Result<(), RateLimitConfigError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RateLimitConfigError::new(
            path,
            format!("{name:?} is not a rule name: use 1 to 64 letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// An HTTP field name (RFC 9110 token); pseudo-headers such as `:authority` are allowed.
fn check_header_name(path: &str, name: &str) -> Result<(), RateLimitConfigError> {
    let token = name.strip_prefix(':').unwrap_or(name);
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RateLimitConfigError::new(
            path,
            format!("{name:?} is not a header name"),
        ))
    }
}
