//! A request prepared once per evaluation, in the forms the matchers compare.

use std::{cell::OnceCell, net::IpAddr};

use super::{
    compile::{cidr::canonical, hash::text_key},
    request::{AuthzRequest, HttpAttributes, RequestAuth},
};

/// The request's attributes as Istio names them, derived once so that no rule repeats the
/// work (stripping `spiffe://`, finding the namespace, cutting the query string).
pub(crate) struct View<'r> {
    /// `source.principal`: the peer ID without `spiffe://`.
    pub(crate) principal: Option<&'r str>,
    /// The peer's ID, for the attributes derived from it on demand.
    id: Option<&'r mesh_core::SpiffeId>,
    /// `source.namespace`, from the principal's `/ns/<namespace>/sa/...` path when needed.
    namespace: OnceCell<Option<&'r str>>,
    pub(crate) source_ip: IpAddr,
    /// The original client's address, or the peer's when there is none.
    pub(crate) remote_ip: IpAddr,
    pub(crate) destination_ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) sni: Option<&'r str>,
    /// `None` on a raw TCP tunnel.
    pub(crate) http: Option<HttpView<'r>>,
    /// Index keys of the principal and the namespace, computed when first needed.
    principal_key: OnceCell<Option<u64>>,
    namespace_key: OnceCell<Option<u64>>,
}

/// The HTTP-only attributes.
pub(crate) struct HttpView<'r> {
    pub(crate) attributes: &'r HttpAttributes,
    /// The path without the query string.
    pub(crate) path: &'r str,
    pub(crate) auth: Option<&'r RequestAuth>,
}

impl<'r> View<'r> {
    pub(crate) fn new(request: &'r AuthzRequest) -> Self {
        let id = request.source_principal.as_ref();
        let source_ip = canonical(request.source_ip);
        View {
            principal: id.map(|id| id.as_str().strip_prefix("spiffe://").unwrap_or(id.as_str())),
            id,
            namespace: OnceCell::new(),
            source_ip,
            remote_ip: request.remote_ip.map_or(source_ip, canonical),
            destination_ip: canonical(request.destination_ip),
            port: request.destination_port,
            sni: request.sni.as_deref(),
            http: request.http.as_ref().map(|attributes| HttpView {
                attributes,
                path: attributes.url_path(),
                auth: request.auth.as_ref(),
            }),
            principal_key: OnceCell::new(),
            namespace_key: OnceCell::new(),
        }
    }

    /// `source.namespace`: most decisions never ask, so it is derived on first use.
    pub(crate) fn namespace(&self) -> Option<&'r str> {
        *self
            .namespace
            .get_or_init(|| self.id.and_then(|id| id.namespace()))
    }

    /// The principal's key in the rule indexes.
    pub(crate) fn principal_key(&self) -> Option<u64> {
        *self
            .principal_key
            .get_or_init(|| self.principal.map(text_key))
    }

    /// The namespace's key in the rule indexes.
    pub(crate) fn namespace_key(&self) -> Option<u64> {
        *self
            .namespace_key
            .get_or_init(|| self.namespace().map(text_key))
    }
}
