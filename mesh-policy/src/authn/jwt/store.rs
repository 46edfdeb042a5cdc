//! Fetched key sets, shared between the runtime that refreshes them and the authenticators
//! that read them.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use super::jwks::Jwks;

/// Remote key sets by URL (`jwksUri`, or an issuer's OpenID configuration URL for
/// discovered keys; see [`JwksSource::store_key`](super::JwksSource::store_key)).
///
/// Cloning gives another handle on the same store. Readers (every authenticated request) take
/// a lock-free snapshot; a refresh replaces one entry with a copy-on-write swap, so keys
/// rotate without rebuilding any [`Authenticator`](super::Authenticator) and without
/// blocking requests.
#[derive(Clone, Debug, Default)]
pub struct JwksStore {
    inner: Arc<ArcSwap<HashMap<String, Arc<Jwks>>>>,
}

impl JwksStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys stored for `url`, if they were ever fetched.
    pub fn get(&self, url: &str) -> Option<Arc<Jwks>> {
        self.inner.load().get(url).cloned()
    }

    /// Stores (or replaces) the keys for `url`.
    pub fn insert(&self, url: impl Into<String>, jwks: impl Into<Arc<Jwks>>) {
        let url = url.into();
        let jwks = jwks.into();
        self.inner.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(url.clone(), jwks.clone());
            map
        });
    }

    /// Forgets the keys for `url` (tokens of its issuers are then refused as
    /// [`KeysUnavailable`](super::RejectReason::KeysUnavailable)).
    pub fn remove(&self, url: &str) {
        self.inner.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.remove(url);
            map
        });
    }

    /// The URLs that have keys.
    pub fn urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.inner.load().keys().cloned().collect();
        urls.sort();
        urls
    }
}
