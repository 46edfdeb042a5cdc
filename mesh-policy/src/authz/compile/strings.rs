//! A set of [`StringPattern`]s compiled for lookup: one hash probe for exact values and one
//! binary search each for prefixes and suffixes, whatever the number of patterns.
//!
//! The prefix (and reversed-suffix) lists are sorted and reduced to be prefix-free: a pattern
//! `/api/*` makes `/api/v1/*` redundant. In a sorted prefix-free list, the only candidate
//! prefix of a value `v` is the greatest key `<= v`: every string between a prefix `p` of `v`
//! and `v` itself starts with `p`, so it would have been removed as redundant.

use std::cmp::Ordering;

use super::hash::ValueSet;

use crate::authz::pattern::StringPattern;

/// Compiled patterns of one field (`principals`, `hosts`, a `when` key's values, ...).
#[derive(Clone, Debug, Default)]
pub(crate) struct StringSet {
    exact: ValueSet<Box<str>>,
    prefixes: Affixes,
    suffixes: Affixes,
    presence: bool,
    /// Patterns were lowercased at load time; values are compared lowercased.
    ignore_case: bool,
}

impl StringSet {
    /// Compiles `patterns`. With `ignore_case`, patterns must already be lowercase.
    pub(crate) fn new(patterns: &[StringPattern], ignore_case: bool) -> Self {
        let mut set = Self {
            ignore_case,
            ..Self::default()
        };
        let (mut exact, mut prefixes, mut suffixes) = (Vec::new(), Vec::new(), Vec::new());
        for pattern in patterns {
            match pattern {
                StringPattern::Exact(s) => exact.push(Box::<str>::from(s.as_str())),
                StringPattern::Prefix(s) => prefixes.push(s.as_bytes().to_vec()),
                StringPattern::Suffix(s) => suffixes.push(s.bytes().rev().collect()),
                StringPattern::Presence => set.presence = true,
            }
        }
        set.exact = ValueSet::new(exact);
        set.prefixes = Affixes::new(prefixes, false);
        set.suffixes = Affixes::new(suffixes, true);
        set
    }

    /// Whether any pattern matches `value`. Presence (`*`) needs a non-empty value, except
    /// when `empty_is_present` (headers: a header sent empty is still present).
    pub(crate) fn matches(&self, value: &str, empty_is_present: bool) -> bool {
        if self.presence && (empty_is_present || !value.is_empty()) {
            return true;
        }
        let folded;
        let key = if self.ignore_case && value.bytes().any(|b| b.is_ascii_uppercase()) {
            folded = value.to_ascii_lowercase();
            folded.as_str()
        } else {
            value
        };
        self.exact.contains(key)
            || self.prefixes.has_affix_of(key.as_bytes())
            || self.suffixes.has_affix_of(key.as_bytes())
    }
}

/// Sorted, prefix-free byte strings: prefixes, or suffixes stored reversed.
#[derive(Clone, Debug, Default)]
struct Affixes {
    keys: Vec<Box<[u8]>>,
    reversed: bool,
}

impl Affixes {
    fn new(mut keys: Vec<Vec<u8>>, reversed: bool) -> Self {
        keys.sort();
        keys.dedup();
        let mut kept: Vec<Box<[u8]>> = Vec::with_capacity(keys.len());
        for key in keys {
            // Sorted order puts every key starting with `p` right after `p`.
            if kept.last().is_some_and(|last| key.starts_with(last)) {
                continue;
            }
            kept.push(key.into_boxed_slice());
        }
        Self {
            keys: kept,
            reversed,
        }
    }

    /// Whether some key is a prefix (or, reversed, a suffix) of `value`. Values are already
    /// lowercased when the set ignores case, so plain byte comparison is enough.
    fn has_affix_of(&self, value: &[u8]) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        let end = self
            .keys
            .partition_point(|key| compare(key, value, self.reversed) != Ordering::Greater);
        end.checked_sub(1)
            .and_then(|i| self.keys.get(i))
            .is_some_and(|key| {
                key.len() <= value.len()
                    && if self.reversed {
                        key.iter().eq(value.iter().rev().take(key.len()))
                    } else {
                        value.starts_with(key)
                    }
            })
    }
}

/// Lexicographic order of `key` against `value` (read backwards when `reversed`).
fn compare(key: &[u8], value: &[u8], reversed: bool) -> Ordering {
    if reversed {
        key.iter().cmp(value.iter().rev())
    } else {
        key.cmp(value)
    }
}

#[cfg(test)]
mod tests {
    use super::StringSet;
    use crate::authz::pattern::StringPattern;

    fn set(patterns: &[&str], ignore_case: bool) -> StringSet {
        let patterns: Vec<_> = patterns.iter().map(|p| StringPattern::parse(p)).collect();
        StringSet::new(&patterns, ignore_case)
    }

    #[test]
    fn exact_prefix_suffix_presence() {
        let s = set(&["GET", "/api/*", "*.css"], false);
        assert!(s.matches("GET", false));
        assert!(!s.matches("get", false));
        assert!(s.matches("/api/", false));
        assert!(s.matches("/api/v1/x", false));
        assert!(!s.matches("/ap", false));
        assert!(s.matches("a/b.css", false));
        assert!(!s.matches("a/b.js", false));
        assert!(!s.matches("", false));
        let any = set(&["*"], false);
        assert!(any.matches("x", false));
        assert!(!any.matches("", false));
        assert!(any.matches("", true));
    }

    #[test]
    fn redundant_prefixes_do_not_hide_shorter_ones() {
        // "/a/b0*" sorts between "/a/*" and "/a/b1", and is dropped as redundant.
        let s = set(&["/a/b0*", "/a/*", "/z*"], false);
        assert!(s.matches("/a/b1", false));
        assert!(s.matches("/a/b0x", false));
        assert!(s.matches("/zz", false));
        assert!(!s.matches("/b", false));
        let suffixes = set(&["*x.com", "*.com", "*.org"], false);
        assert!(suffixes.matches("a.y.com", false));
        assert!(suffixes.matches("a.org", false));
        assert!(!suffixes.matches("a.net", false));
    }

    #[test]
    fn case_insensitive_sets_fold_the_value() {
        let s = set(&["example.com", "api.*", "*.shop.io"], true);
        assert!(s.matches("Example.COM", false));
        assert!(s.matches("API.v1", false));
        assert!(s.matches("WWW.Shop.IO", false));
        assert!(!s.matches("example.org", false));
    }
}
