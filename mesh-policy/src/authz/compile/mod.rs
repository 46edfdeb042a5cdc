//! Policies compiled for fast decisions.
//!
//! - `strings`: exact values in a hash set, prefixes and suffixes in sorted prefix-free lists;
//! - `cidr`: IP blocks as hash sets per prefix length, ports as sorted lists;
//! - `rule`: one rule's sources, operations and conditions built from those sets;
//! - `hash`: the fast hasher those sets and indexes use (keys come from trusted documents);
//! - `index`: the rules of one action filed by principal, namespace or port, so a request
//!   visits only the rules that could match it.

pub(crate) mod cidr;
pub(crate) mod hash;
pub(crate) mod index;
pub(crate) mod rule;
pub(crate) mod strings;
