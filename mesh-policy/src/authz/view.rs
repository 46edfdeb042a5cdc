//! A request prepared once per evaluation, in the forms the matchers compare.

use std::net::IpAddr;

use super::{
    compile::cidr::canonical,
    request::{AuthzRequest, HttpAttributes, RequestAuth},
};

/// The request's attributes as Istio names them, derived once so that no rule repeats the
/// work (stripping `spiffe://`, finding the namespace, cutting the query string).
pub(crate) struct View<'r> {
    /// `source.principal`: the peer ID without `spiffe://`.
    pub(crate) principal: Option<&'r str>,
    /// `source.namespace`: from the principal's `/ns/<namespace>/sa/...` path.
    pub(crate) namespace: Option<&'r str>,
    pub(crate) source_ip: IpAddr,
    /// The original client's address, or the peer's when there is none.
    pub(crate) remote_ip: IpAddr,
    pub(crate) destination_ip: IpAddr,
    pub(crate) port: u16,
    pub(crate) sni: Option<&'r str>,
    /// `None` on a raw TCP tunnel.
    pub(crate) http: Option<HttpView<'r>>,
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
            namespace: id.and_then(|id| id.namespace()),
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
        }
    }
}
