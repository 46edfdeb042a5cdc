//! The YAML shapes of Istio's traffic resources, field for field, with serde.
//!
//! Every shape exists twice, generated from one list by [`shapes!`]: in Istio's spelling
//! (`istio`: camelCase fields, `ROUND_ROBIN` enum values) for DestinationRule and VirtualService
//! documents, and in the mesh config's spelling (`snake`: `load_balancer`, `round_robin`) for
//! the `traffic_policy:` section of [`MeshConfig`](crate::config::MeshConfig). The snake shapes
//! convert into the Istio ones field by field ([`Conv`]), so one converter validates both and the
//! model is the same whichever file it came from.
//!
//! Every struct refuses unknown fields. Fields Istio has but this mesh does not implement
//! (`tunnel`, `warmup`, `fault`, ...) are read as [`Present`] only so that the converter can
//! refuse them with "not supported" rather than "unknown field".

mod section;
mod shapes;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de::IgnoredAny};

pub(crate) use section::ServiceTraffic;
pub(crate) use shapes::{FIELD_NAMES, istio, snake};

/// A field whose value is not read, only noticed: anything parses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(Self)
    }
}

/// A lossless conversion from a snake_case shape to its Istio twin.
pub(crate) trait Conv {
    /// The Istio shape.
    type Out;
    /// Converts, field by field.
    fn conv(self) -> Self::Out;
}

macro_rules! identity_conv {
    ($($t:ty),*) => {
        $(impl Conv for $t {
            type Out = $t;
            fn conv(self) -> $t {
                self
            }
        })*
    };
}

identity_conv!(String, u32, u64, bool, Present);

impl<T: Conv> Conv for Option<T> {
    type Out = Option<T::Out>;
    fn conv(self) -> Self::Out {
        self.map(Conv::conv)
    }
}

impl<T: Conv> Conv for Vec<T> {
    type Out = Vec<T::Out>;
    fn conv(self) -> Self::Out {
        self.into_iter().map(Conv::conv).collect()
    }
}

impl<T: Conv> Conv for BTreeMap<String, T> {
    type Out = BTreeMap<String, T::Out>;
    fn conv(self) -> Self::Out {
        self.into_iter().map(|(k, v)| (k, v.conv())).collect()
    }
}

impl<T: Conv> Conv for Box<T> {
    type Out = Box<T::Out>;
    fn conv(self) -> Self::Out {
        Box::new((*self).conv())
    }
}

/// Istio's camelCase spelling of a Rust (snake_case) field name, as serde derives it.
pub(crate) fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.trim_start_matches("r#").chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Rewrites a path written with Istio's field names (`portLevelSettings[0].connectionPool`)
/// into the mesh config's (`port_level_settings[0].connection_pool`). Map keys (header names)
/// that are not field names are kept as written.
pub(crate) fn snake_path(camel_path: &str) -> String {
    let mut out = String::with_capacity(camel_path.len() + 8);
    let mut segment = String::new();
    let flush = |segment: &mut String, out: &mut String| {
        if !segment.is_empty() {
            let name = FIELD_NAMES
                .iter()
                .find(|f| camel_case(f) == *segment)
                .map_or(segment.as_str(), |f| f.trim_start_matches("r#"));
            out.push_str(name);
            segment.clear();
        }
    };
    let mut in_index = false;
    for c in camel_path.chars() {
        match c {
            '[' if !in_index => {
                flush(&mut segment, &mut out);
                in_index = true;
                out.push(c);
            }
            ']' if in_index => {
                in_index = false;
                out.push(c);
            }
            '.' if !in_index => {
                flush(&mut segment, &mut out);
                out.push(c);
            }
            _ if in_index => out.push(c),
            _ => segment.push(c),
        }
    }
    flush(&mut segment, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_matches_serde() {
        assert_eq!(camel_case("consecutive_5xx_errors"), "consecutive5xxErrors");
        assert_eq!(
            camel_case("http1_max_pending_requests"),
            "http1MaxPendingRequests"
        );
        assert_eq!(camel_case("r#match"), "match");
        assert_eq!(camel_case("host"), "host");
    }

    #[test]
    fn paths_map_to_snake_case() {
        assert_eq!(
            snake_path("portLevelSettings[2].outlierDetection.consecutive5xxErrors"),
            "port_level_settings[2].outlier_detection.consecutive_5xx_errors"
        );
        assert_eq!(
            snake_path("http[0].match[1].headers.x-user-id"),
            "http[0].match[1].headers.x-user-id"
        );
        assert_eq!(snake_path(""), "");
    }
}
