//! JWKS fetching and refresh against real HTTP(S) servers on loopback: first fetch, key
//! rotation picked up by the periodic refresh, failures keeping the last good keys, timeouts,
//! HTTPS with a private CA, OpenID discovery, and end-to-end token verification.

mod jwks_server;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jwks_server::{JwksServer, Reply, SigningKey, TestCa, jwks};
use mesh_client::authn::{
    JwksClient, JwksFetchError, JwksRefreshConfig, JwksRefresher, JwksSourceStatus, JwksTls,
};
use mesh_core::clock::Clock;
use mesh_policy::{
    authn::{
        Authenticator, JwksStore, UnixClock,
        jwt::{RejectReason, parse_request_authentications},
    },
    authz::Workload,
};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(20);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An authenticator for one rule: `issuer` with `keys` YAML (`jwksUri: ...` or nothing).
fn authenticator(issuer: &str, keys: &str, store: &JwksStore) -> Authenticator {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: jwt, namespace: shop}}\nspec:\n  jwtRules:\n  - issuer: {issuer}\n    {keys}\n    timeout: 1s\n"
    );
    let policies = parse_request_authentications(&yaml).unwrap();
    Authenticator::new(&policies, &Workload::new("shop"), store.clone())
}

fn check(authn: &Authenticator, token: &str) -> Result<Option<String>, RejectReason> {
    let parts = http::Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
        .into_parts()
        .0;
    authn
        .authenticate(&parts, UnixClock.now())
        .map(|o| o.auth.and_then(|a| a.principal))
        .map_err(|e| e.reason().clone())
}

/// Waits (bounded) until the refresher's status for its only URL satisfies `done`.
async fn wait_until(
    refresher: &JwksRefresher,
    done: impl Fn(&JwksSourceStatus) -> bool,
) -> JwksSourceStatus {
    let mut attempts = refresher.subscribe();
    timeout(STEP, async {
        loop {
            let status = refresher.status().remove(0);
            if done(&status) {
                return status;
            }
            attempts.changed().await.expect("refresher alive");
        }
    })
    .await
    .expect("refresher reached the expected state in time")
}

fn fast(refresh: Duration) -> JwksRefreshConfig {
    JwksRefreshConfig::default()
        .with_refresh_interval(refresh)
        .with_retry(Duration::from_millis(20), Duration::from_millis(100))
}

#[tokio::test]
async fn keys_are_fetched_and_rotation_is_picked_up_by_refresh() {
    let (old, new) = (SigningKey::new("old"), SigningKey::new("new"));
    let server = JwksServer::http(Reply::Body(jwks(&[&old]))).await;
    let iss = "https://issuer.example";
    let store = JwksStore::new();
    let authn = authenticator(iss, &format!("jwksUri: {}", server.jwks_url()), &store);
    // Before the first fetch: fail closed.
    assert!(matches!(
        check(&authn, &old.sign(iss, "a", now_secs())),
        Err(RejectReason::KeysUnavailable(_))
    ));

    let refresher = JwksRefresher::spawn(
        JwksClient::new(&JwksTls::default()),
        store.clone(),
        authn.remote_jwks(),
        fast(Duration::from_millis(100)),
    );
    let status = wait_until(&refresher, |s| s.successes >= 1).await;
    assert_eq!((status.keys, status.last_error), (Some(1), None));
    assert!(status.last_success.is_some());
    assert_eq!(
        check(&authn, &old.sign(iss, "a", now_secs())),
        Ok(Some(format!("{iss}/a")))
    );

    // The issuer rotates: the periodic refresh swaps the keys under the same authenticator.
    server.set(Reply::Body(jwks(&[&new])));
    let hits = server.hits();
    wait_until(&refresher, |_| {
        store
            .get(&server.jwks_url())
            .is_some_and(|k| k.keys()[0].kid() == Some("new"))
    })
    .await;
    assert!(server.hits() > hits);
    assert_eq!(
        check(&authn, &new.sign(iss, "b", now_secs())),
        Ok(Some(format!("{iss}/b")))
    );
    assert!(matches!(
        check(&authn, &old.sign(iss, "a", now_secs())),
        Err(RejectReason::NoMatchingKey { .. })
    ));
}

#[tokio::test]
async fn a_failing_server_keeps_the_last_good_keys() {
    let key = SigningKey::new("k");
    let server = JwksServer::http(Reply::Body(jwks(&[&key]))).await;
    let iss = "https://issuer.example";
    let store = JwksStore::new();
    let authn = authenticator(iss, &format!("jwksUri: {}", server.jwks_url()), &store);
    let refresher = JwksRefresher::spawn(
        JwksClient::new(&JwksTls::default()),
        store.clone(),
        authn.remote_jwks(),
        fast(Duration::from_millis(50)),
    );
    wait_until(&refresher, |s| s.successes >= 1).await;

    for (reply, needle) in [
        (Reply::Status(503), "HTTP status 503"),
        (
            Reply::Body("<html>oops</html>".into()),
            "not a usable key set",
        ),
        (
            Reply::Body(r#"{"keys": [{"kty": "oct", "k": "AA"}]}"#.into()),
            "no usable key",
        ),
    ] {
        server.set(reply);
        let before = refresher.status()[0].failures;
        let status = wait_until(&refresher, |s| s.failures >= before + 2).await;
        let error = status.last_error.expect("failure recorded");
        assert!(error.contains(needle), "{error} should mention {needle}");
        assert!(status.consecutive_failures >= 2);
        // Still verifying with the last good keys.
        assert_eq!(status.keys, Some(1));
        assert!(check(&authn, &key.sign(iss, "a", now_secs())).is_ok());
    }

    // Recovery clears the error.
    server.set(Reply::Body(jwks(&[&key])));
    let status = wait_until(&refresher, |s| s.last_error.is_none()).await;
    assert_eq!(status.consecutive_failures, 0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = JwksServer::http(Reply::Hang).await;
    let store = JwksStore::new();
    let authn = authenticator(
        "https://i.example",
        &format!("jwksUri: {}", server.jwks_url()),
        &store,
    );
    let source = authn.remote_jwks().remove(0);
    assert_eq!(source.timeout, Duration::from_secs(1));
    let client = JwksClient::new(&JwksTls::default());
    let started = std::time::Instant::now();
    let err = timeout(STEP, client.fetch(&source))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, JwksFetchError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The refresher records it and the issuer's tokens stay refused.
    let refresher = JwksRefresher::spawn(
        client,
        store.clone(),
        vec![source],
        fast(Duration::from_secs(60)),
    );
    let status = wait_until(&refresher, |s| s.failures >= 1).await;
    assert!(status.last_error.unwrap().contains("no complete response"));
    assert!(store.get(&server.jwks_url()).is_none());
}

#[tokio::test]
async fn oversized_and_unreachable_endpoints_are_errors() {
    let key = SigningKey::new("k");
    let big = jwks(&[&key]) + &" ".repeat(4096);
    let server = JwksServer::http(Reply::Body(big)).await;
    let client = JwksClient::new(&JwksTls::default()).with_max_body_bytes(1024);
    let err = timeout(STEP, client.fetch_jwks(&server.jwks_url()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, JwksFetchError::TooLarge { limit: 1024, .. }),
        "{err}"
    );

    // Nothing listens on a port we just closed.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = timeout(STEP, client.fetch_jwks(&format!("http://{addr}/jwks")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, JwksFetchError::Transport { .. }), "{err}");
    let err = timeout(STEP, client.fetch_jwks("ftp://example.invalid/x"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, JwksFetchError::BadUrl { .. }), "{err}");
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let ca = TestCa::new();
    let key = SigningKey::new("k");
    let server = JwksServer::https(Reply::Body(jwks(&[&key])), &ca).await;
    let trusting = JwksClient::new(&JwksTls::only(vec![ca.root.clone()]));
    let fetched = timeout(STEP, trusting.fetch_jwks(&server.jwks_url()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched.keys()[0].kid(), Some("k"));

    // The platform's roots do not know this CA: the TLS failure is reported, not hidden.
    let platform = JwksClient::new(&JwksTls::default());
    let err = timeout(STEP, platform.fetch_jwks(&server.jwks_url()))
        .await
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, JwksFetchError::Transport { .. }), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn openid_discovery_finds_the_keys() {
    let ca = TestCa::new();
    let key = SigningKey::new("k");
    let server = JwksServer::https(Reply::Body(jwks(&[&key])), &ca).await;
    let iss = server.issuer();
    let store = JwksStore::new();
    // No jwks/jwksUri: the keys come from the issuer's OpenID configuration.
    let authn = authenticator(&iss, "forwardOriginalToken: false", &store);
    let refresher = JwksRefresher::spawn(
        JwksClient::new(&JwksTls::only(vec![ca.root.clone()])),
        store.clone(),
        authn.remote_jwks(),
        fast(Duration::from_secs(60)),
    );
    let status = wait_until(&refresher, |s| s.successes >= 1).await;
    assert_eq!(
        status.url,
        format!("{iss}/.well-known/openid-configuration")
    );
    assert_eq!(
        check(&authn, &key.sign(&iss, "carol", now_secs())),
        Ok(Some(format!("{iss}/carol")))
    );
}

#[tokio::test]
async fn refresh_now_and_changing_sources() {
    let (a, b) = (SigningKey::new("a"), SigningKey::new("b"));
    let server = JwksServer::http(Reply::Body(jwks(&[&a]))).await;
    let other = JwksServer::http(Reply::Body(jwks(&[&b]))).await;
    let store = JwksStore::new();
    let first = authenticator(
        "https://i.example",
        &format!("jwksUri: {}", server.jwks_url()),
        &store,
    );
    // A refresh interval far beyond the test: only refresh_now can fetch again.
    let refresher = JwksRefresher::spawn(
        JwksClient::new(&JwksTls::default()),
        store.clone(),
        first.remote_jwks(),
        fast(Duration::from_secs(3600)),
    );
    wait_until(&refresher, |s| s.successes == 1).await;
    server.set(Reply::Body(jwks(&[&b])));
    refresher.refresh_now();
    wait_until(&refresher, |s| s.successes == 2).await;
    assert_eq!(
        store.get(&server.jwks_url()).unwrap().keys()[0].kid(),
        Some("b")
    );

    // The policy now points at another server: the old URL is dropped from the store.
    let second = authenticator(
        "https://i.example",
        &format!("jwksUri: {}", other.jwks_url()),
        &store,
    );
    refresher.set_sources(second.remote_jwks());
    let status = wait_until(&refresher, |s| s.successes >= 1).await;
    assert_eq!(status.url, other.jwks_url());
    assert_eq!(store.urls(), [other.jwks_url()]);
    drop(refresher);
    // Keys stay in the store after the refresher stops.
    assert!(store.get(&other.jwks_url()).is_some());
}
