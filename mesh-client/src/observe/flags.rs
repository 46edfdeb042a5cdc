//! Envoy's response flags: why a request or connection did not complete normally, in the short
//! codes Istio puts in the `response_flags` label and access logs (`UF`, `UH`, `URX`, ...).

use std::fmt;

/// A set of Envoy response flags. Empty renders as `-`, as Envoy and Istio write it; several
/// flags render comma-separated in a fixed order.
///
/// ```
/// use mesh_client::observe::ResponseFlags;
/// let flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
/// assert_eq!(flags.to_string(), "UF,URX");
/// assert_eq!(ResponseFlags::NONE.to_string(), "-");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($( $(#[$doc:meta])* $name:ident = $bit:expr, $code:literal; )*) => {
        impl ResponseFlags {
            $( $(#[$doc])* pub const $name: Self = Self(1 << $bit); )*
            /// Every flag with its short code, in rendering order.
            const CODES: &'static [(Self, &'static str)] = &[ $( (Self::$name, $code), )* ];
        }
    };
}

flags! {
    /// `DC`: the downstream (the caller) closed or reset the connection mid-request.
    DOWNSTREAM_CONNECTION_TERMINATION = 0, "DC";
    /// `DPE`: the downstream request had an HTTP protocol error.
    DOWNSTREAM_PROTOCOL_ERROR = 1, "DPE";
    /// `NR`: no route matched the request (or no target for a tunnel's port).
    NO_ROUTE_FOUND = 2, "NR";
    /// `RL`: the request was rate limited locally or by the global limiter.
    RATE_LIMITED = 3, "RL";
    /// `RLSE`: the rate-limit service failed and the request was refused (fail closed).
    RATE_LIMIT_SERVICE_ERROR = 4, "RLSE";
    /// `UAEX`: an authorization service (or policy) denied the request.
    UNAUTHORIZED_EXTERNAL_SERVICE = 5, "UAEX";
    /// `UC`: the upstream connection ended before the response did.
    UPSTREAM_CONNECTION_TERMINATION = 6, "UC";
    /// `UF`: connecting to the upstream failed (TCP, TLS or the CONNECT).
    UPSTREAM_CONNECTION_FAILURE = 7, "UF";
    /// `UH`: no healthy upstream endpoint.
    NO_HEALTHY_UPSTREAM = 8, "UH";
    /// `UO`: the circuit breaker refused (upstream overflow).
    UPSTREAM_OVERFLOW = 9, "UO";
    /// `UPE`: the upstream answered with an HTTP protocol error.
    UPSTREAM_PROTOCOL_ERROR = 10, "UPE";
    /// `UR`: the upstream reset the stream.
    UPSTREAM_REMOTE_RESET = 11, "UR";
    /// `URX`: retries were exhausted (attempt limit, retry budget or retry overflow).
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 12, "URX";
    /// `UT`: the request timed out waiting for the upstream.
    UPSTREAM_REQUEST_TIMEOUT = 13, "UT";
}

impl ResponseFlags {
    /// No flag: the request completed normally (rendered `-`).
    pub const NONE: Self = Self(0);

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The rendered form without allocating for the common cases.
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        if self.is_empty() {
            return "-".into();
        }
        let mut single = None;
        let mut count = 0;
        for (flag, code) in Self::CODES {
            if self.contains(*flag) {
                single = Some(*code);
                count += 1;
            }
        }
        match (count, single) {
            (1, Some(code)) => code.into(),
            _ => self.to_string().into(),
        }
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ResponseFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, code) in Self::CODES {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(code)?;
                first = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseFlags as F;

    #[test]
    fn renders_like_envoy() {
        assert_eq!(F::NONE.to_string(), "-");
        assert_eq!(F::NO_HEALTHY_UPSTREAM.to_string(), "UH");
        assert_eq!(F::RATE_LIMITED.as_str(), "RL");
        let both = F::UPSTREAM_REQUEST_TIMEOUT | F::UPSTREAM_RETRY_LIMIT_EXCEEDED;
        assert_eq!(both.to_string(), "URX,UT");
        assert_eq!(both.as_str(), "URX,UT");
        assert!(both.contains(F::UPSTREAM_REQUEST_TIMEOUT));
        assert!(!both.contains(F::NO_ROUTE_FOUND));
        assert!(!both.is_empty());
    }
}
