//! Test support shared by the integration tests that declare `mod support;`.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test crate uses a different subset"
)]

pub mod generate;
pub mod parse;
pub mod reference;
