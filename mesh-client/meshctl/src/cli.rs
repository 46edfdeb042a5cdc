//! The command line as clap types: parsing only, no behaviour.
//!
//! Doc comments here are the `--help` text: the first paragraph is the short help (`-h`), the
//! rest is added by `--help`. Values with rules of their own (trust domains, SPIFFE IDs,
//! durations) arrive as strings and are validated by the command, so their errors read like every
//! other meshctl error (`meshctl: invalid --ttl ...`) and name the flag.
//!
//! To add a command group (`hbone`, `authz`, `status`, ...): add a variant to [`Command`] with its
//! own subcommand enum below, a module under `cmd/`, and one arm in `cmd::run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate a service mesh from the shell: development CA, SVIDs, certificate inspection, HBONE
/// tunnels, authorization policy checks, configuration checks.
///
/// Exit status: 0 when all is well, 1 when what was examined has problems or a tunnel failed, 2
/// when the command could not do its job.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The command group to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The command groups, one per area of the mesh an operator deals with.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a development CA and issue SVIDs from it.
    ///
    /// For machines and tests with no external CA. The CA key is kept in a plain file, so do not
    /// use it to protect anything that matters.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Examine certificates the way the mesh will judge them.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Serve and open HBONE tunnels (HTTP/2 CONNECT over mutual TLS, as Istio's ztunnel).
    #[command(subcommand)]
    Hbone(HboneCommand),
    /// Evaluate Istio AuthorizationPolicy files the way the mesh enforces them.
    #[command(subcommand)]
    Authz(AuthzCommand),
    /// Validate the mesh's config and Istio YAML files the way the mesh loads them.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Summarize a running workload from its admin endpoint: readiness, certificate, pools,
    /// discovery, services, policies and traffic.
    ///
    /// Reads /config_dump, /healthz/ready and /metrics from ADDR (the workload's `admin:
    /// listen`, 127.0.0.1:15020 by default). Exit status 1 when the workload is not ready or
    /// discovery is failing, 2 when ADDR cannot be reached.
    Status(StatusArgs),
    /// List a service's endpoints as a running workload sees them: health, outlier ejection,
    /// weight, locality and identity.
    ///
    /// SERVICE is the host (`inventory.shop.svc.cluster.local`) or, when unambiguous, its
    /// first label (`inventory`). Exit status 1 when an endpoint is unhealthy or ejected, 2
    /// when ADDR cannot be reached or the service is unknown.
    Endpoints(EndpointsArgs),
}

/// Arguments of `meshctl status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The workload's admin endpoint, `host:port` (such as 127.0.0.1:15020).
    #[arg(value_name = "ADDR")]
    pub(crate) addr: String,
}

/// Arguments of `meshctl endpoints`.
#[derive(Debug, Args)]
pub(crate) struct EndpointsArgs {
    /// The workload's admin endpoint, `host:port` (such as 127.0.0.1:15020).
    #[arg(value_name = "ADDR")]
    pub(crate) addr: String,
    /// The service whose endpoints to list.
    #[arg(value_name = "SERVICE")]
    pub(crate) service: String,
}

/// `meshctl ca ...`
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a CA for one trust domain: writes ca.pem, ca.key and bundle.pem.
    ///
    /// ca.key (mode 0600) is what lets anyone issue identities in the trust domain; bundle.pem
    /// is what workloads need in order to trust them.
    Init(CaInitArgs),
    /// Issue an SVID from a CA: writes svid.pem, svid.key and bundle.pem.
    ///
    /// Each file is replaced atomically, so a workload watching the output directory picks up
    /// the new SVID without ever reading a half-written file.
    Issue(CaIssueArgs),
}

/// Arguments of `meshctl ca init`.
#[derive(Debug, Args)]
pub(crate) struct CaInitArgs {
    /// Trust domain the CA issues for, such as `cluster.local` (or `spiffe://cluster.local`).
    #[arg(long, value_name = "TRUST_DOMAIN")]
    pub(crate) trust_domain: String,
    /// Directory to write the CA into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Replace a CA already in DIR.
    ///
    /// Without this meshctl refuses: SVIDs issued by the old CA would stop verifying against the
    /// new bundle, and the old key would be lost.
    #[arg(long)]
    pub(crate) force: bool,
}

/// Arguments of `meshctl ca issue`.
#[derive(Debug, Args)]
pub(crate) struct CaIssueArgs {
    /// Directory holding the CA (as written by `meshctl ca init`).
    #[arg(long = "ca", value_name = "DIR")]
    pub(crate) ca_dir: PathBuf,
    /// SPIFFE ID to issue for, such as `spiffe://cluster.local/ns/NS/sa/SA`.
    ///
    /// Its trust domain must be the CA's.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub(crate) id: String,
    /// Directory to write the SVID into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// How long the SVID stays valid: a whole number with a unit, such as 90s, 30m, 24h, 7d.
    ///
    /// Units can be combined (1h30m). Short lifetimes limit the damage of a leaked key; the mesh
    /// renews SVIDs at half their lifetime.
    // Hyphen values are let through so `-1h` gets meshctl's explanation, not "unexpected argument".
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        allow_hyphen_values = true
    )]
    pub(crate) ttl: String,
}

/// `meshctl cert ...`
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Show what a PEM file's certificates say and what would stop them working as SVIDs.
    ///
    /// The first certificate is judged as an SVID leaf (unless it is a CA), the rest as its
    /// chain. Exit status 1 means at least one certificate has problems.
    Inspect(CertInspectArgs),
}

/// Arguments of `meshctl cert inspect`.
#[derive(Debug, Args)]
pub(crate) struct CertInspectArgs {
    /// PEM file to inspect (svid.pem, ca.pem, bundle.pem, ...).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// `meshctl hbone ...`
#[derive(Debug, Subcommand)]
pub(crate) enum HboneCommand {
    /// Accept HBONE tunnels and forward them to a TCP address, or echo their bytes back.
    ///
    /// Prints `listening on ADDR as SPIFFE_ID` on stdout once it accepts tunnels, then logs each
    /// tunnel's verified peer identity to stderr (RUST_LOG sets the level; default info); with
    /// --admin it also serves metrics and the admin endpoint. The
    /// certificate files are re-read every second, so a rotated SVID is used without a restart.
    /// SIGINT or SIGTERM drains open tunnels for up to 5 seconds, then exits 0; a second signal
    /// exits at once.
    Serve(HboneServeArgs),
    /// Open one HBONE tunnel and connect it to stdin and stdout, like netcat.
    ///
    /// stdin's end half-closes the tunnel (the server sees end-of-file and can still answer);
    /// meshctl exits 0 once the server has closed its side and everything it sent is written to
    /// stdout. Exit status 1 means the tunnel failed (refused, denied, unexpected identity,
    /// reset), 2 that the arguments or files are unusable.
    Connect(HboneConnectArgs),
}

/// The workload's own identity: the files `meshctl ca issue` writes.
#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    /// The SVID certificate chain, leaf first (svid.pem).
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: PathBuf,
    /// The SVID's private key (svid.key).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The trust bundle of the SVID's trust domain (bundle.pem).
    ///
    /// Peers are accepted only from that trust domain and only with chains leading to these
    /// roots.
    #[arg(long, value_name = "FILE")]
    pub(crate) bundle: PathBuf,
}

/// Arguments of `meshctl hbone serve`.
#[derive(Debug, Args)]
pub(crate) struct HboneServeArgs {
    /// Address to accept HBONE on, such as `0.0.0.0:15008` (port 0 picks a free port).
    ///
    /// Clients must dial an IP this socket is reachable on and put that same IP in their CONNECT
    /// authority.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: String,
    /// This workload's identity.
    #[command(flatten)]
    pub(crate) identity: IdentityArgs,
    /// What to do with the tunnels' bytes.
    #[command(flatten)]
    pub(crate) delivery: DeliveryArgs,
    /// Also serve the admin endpoint on ADDR, such as `127.0.0.1:15020` (port 0 picks one).
    ///
    /// It answers /metrics and /stats/prometheus (Istio's TCP metrics as the destination,
    /// handshakes, certificate expiry), /healthz/ready, /config_dump and /logging, and is
    /// announced on stdout as `admin endpoint on ADDR` after the `listening on` line. Bind it to
    /// loopback unless the network may read it: it shows the configuration and changes log
    /// levels.
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin: Option<String>,
}

/// Where `hbone serve` sends accepted tunnels: exactly one of the options.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct DeliveryArgs {
    /// Forward every tunnel to this TCP address (`ip:port`), whatever its target port.
    ///
    /// When ADDR cannot be reached the client is answered 503.
    #[arg(long, value_name = "ADDR")]
    pub(crate) forward: Option<String>,
    /// Send every tunnel's bytes back to its client, then close when the client closes.
    #[arg(long)]
    pub(crate) echo: bool,
}

/// Arguments of `meshctl hbone connect`.
#[derive(Debug, Args)]
pub(crate) struct HboneConnectArgs {
    /// The HBONE address to dial, `ip:port` (HBONE's conventional port is 15008).
    #[arg(long, value_name = "ADDR")]
    pub(crate) to: String,
    /// The CONNECT authority, `IP:PORT`: the tunnel's target on the server's side.
    ///
    /// HBONE requires IP to be the address dialed with --to (servers answer 400 otherwise);
    /// PORT is the application port the tunnel is for.
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) authority: String,
    /// The SPIFFE ID the server must present; any other identity is refused.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub(crate) expect_id: String,
    /// This workload's identity (the client certificate).
    #[command(flatten)]
    pub(crate) identity: IdentityArgs,
}

/// `meshctl authz ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AuthzCommand {
    /// Decide a described request against policy files and explain the decision.
    ///
    /// Prints ALLOW or DENY as the first word, then the policy and rule that decided and why,
    /// the CUSTOM providers that would be asked, and the AUDIT and dry-run policies that
    /// matched. Without --method the request is a raw TCP tunnel (L4): ALLOW rules that need
    /// HTTP attributes cannot match it, DENY rules are judged on their other parts, as ztunnel
    /// does. Exit status 0 whatever the decision; 2 when a file or argument is unusable.
    // Boxed: its many flags would make every `Command` as large as it is.
    Check(Box<AuthzCheckArgs>),
}

/// Arguments of `meshctl authz check`.
#[derive(Debug, Args)]
pub(crate) struct AuthzCheckArgs {
    /// A file of AuthorizationPolicy documents (YAML, `---` between documents); repeatable.
    ///
    /// Every document must be a valid security.istio.io/v1 (or v1beta1) AuthorizationPolicy:
    /// errors name the file, the document and the field.
    #[arg(long = "policy", value_name = "FILE", required = true)]
    pub(crate) policies: Vec<PathBuf>,
    /// The workload's namespace: policies there, and in the root namespace, apply to it.
    #[arg(long, value_name = "NS", default_value = "default")]
    pub(crate) namespace: String,
    /// A workload label, matched against `spec.selector.matchLabels`; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// The mesh's root namespace, whose policies apply to every workload.
    #[arg(long, value_name = "NS", default_value = "istio-system")]
    pub(crate) root_namespace: String,
    /// The caller's verified identity, `spiffe://TD/ns/NS/sa/SA` (the scheme may be left
    /// out); without it the caller is a plaintext peer.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub(crate) principal: Option<String>,
    /// The caller's address (`source.ip`, `ipBlocks`).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub(crate) source_ip: String,
    /// The original client's address, as X-Forwarded-For would give it (`remoteIpBlocks`);
    /// defaults to the caller's address.
    #[arg(long, value_name = "IP")]
    pub(crate) remote_ip: Option<String>,
    /// The workload's address the request arrives on (`destination.ip`).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub(crate) destination_ip: String,
    /// The port the request arrives on (`ports`, `destination.port`).
    #[arg(long, value_name = "N", default_value_t = 80)]
    pub(crate) port: u16,
    /// The TLS server name the caller sent (`connection.sni`).
    #[arg(long, value_name = "NAME")]
    pub(crate) sni: Option<String>,
    /// Makes the request HTTP, with this method (`methods`).
    #[arg(long, value_name = "M")]
    pub(crate) method: Option<String>,
    /// The HTTP path, query string allowed (`paths`).
    #[arg(long, value_name = "P", default_value = "/", requires = "method")]
    pub(crate) path: String,
    /// The HTTP host / authority (`hosts`); defaults to the destination address and port.
    #[arg(long, value_name = "H", requires = "method")]
    pub(crate) host: Option<String>,
    /// An HTTP request header (`request.headers[NAME]`); repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE", requires = "method")]
    pub(crate) headers: Vec<String>,
    /// The request's JWT principal, `ISSUER/SUBJECT` (`requestPrincipals`).
    #[arg(long, value_name = "ISS/SUB", requires = "method")]
    pub(crate) request_principal: Option<String>,
    /// A claim of the request's JWT (`request.auth.claims[NAME]`); repeatable, and repeating a
    /// name makes a list. `a[b]=v` sets a nested claim; `aud` and `azp` set the audiences and
    /// presenter, `iss` and `sub` the principal.
    #[arg(long = "claim", value_name = "NAME=VALUE", requires = "method")]
    pub(crate) claims: Vec<String>,
}

/// `meshctl config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Check files of YAML documents: the mesh config, DestinationRule, VirtualService,
    /// AuthorizationPolicy, RequestAuthentication, PeerAuthentication.
    ///
    /// Every document of every file is read by the loader the mesh uses for its kind, and the
    /// traffic resources of all files are checked against each other (subsets named by routes
    /// exist, one DestinationRule and one VirtualService per host). Prints `FILE:DOC: Kind
    /// name: summary` for each valid document and `FILE:DOC:FIELD: reason` for each problem,
    /// in file order. Exit status 0 when all is valid, 1 when there are problems, 2 when a file
    /// cannot be read.
    Check(ConfigCheckArgs),
}

/// Arguments of `meshctl config check`.
#[derive(Debug, Args)]
pub(crate) struct ConfigCheckArgs {
    /// The files to check (YAML, `---` between documents).
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// The namespace of Istio documents without `metadata.namespace`; short host names
    /// (`reviews`) are completed in the document's namespace.
    #[arg(long, value_name = "NS", default_value = "default")]
    pub(crate) namespace: String,
    /// The cluster's DNS suffix for short host names: `reviews` in namespace `shop` is
    /// `reviews.shop.svc.SUFFIX`.
    #[arg(long, value_name = "SUFFIX", default_value = "cluster.local")]
    pub(crate) domain_suffix: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
