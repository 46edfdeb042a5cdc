//! DNS discovery against a real DNS server: Debian's dnsmasq on a free loopback port, serving
//! A and SRV records from files it re-reads on SIGHUP, with a 1-second TTL.
//!
//! When `dnsmasq` is not installed the tests skip with a message, unless `CI` is set: then
//! they fail, so CI cannot pass without exercising real DNS.

use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use mesh_client::discovery::{Discovery, DnsDiscovery, DnsDiscoveryConfig, DnsRecords, DnsService};
use mesh_core::model::Snapshot;

const STEP: Duration = Duration::from_secs(20);
const ID: &str = "spiffe://cluster.local/ns/shop/sa/inventory";

struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    hosts: PathBuf,
}

fn dnsmasq_binary() -> Option<PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (an /etc/hosts-style file) and SRV records.
    fn start(hosts: &str, srv: &[&str]) -> Option<Self> {
        let Some(binary) = dnsmasq_binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "dnsmasq is not installed (apt-get install dnsmasq-base)"
            );
            eprintln!("skipping: dnsmasq is not installed");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let hosts_file = dir.path().join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        // A free UDP port (dnsmasq binds TCP on the same number; collisions fail loudly).
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
        let mut command = Command::new(binary);
        command
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg(format!("--port={port}"))
            .arg("--listen-address=127.0.0.1")
            .arg("--bind-interfaces")
            .arg("--no-resolv")
            .arg("--no-hosts")
            .arg(format!("--addn-hosts={}", hosts_file.display()))
            .arg("--local-ttl=1")
            .arg(format!("--user={user}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()));
        for record in srv {
            command.arg(format!("--srv-host={record}"));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
            hosts: hosts_file,
        };
        server.wait_ready(port);
        Some(server)
    }

    /// Waits until dnsmasq answers a query (a raw DNS query for `localhost.`), bounded.
    fn wait_ready(&self, port: u16) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // id 0x1234, RD, one question: "probe." A IN
        let query = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'p', b'r', b'o', b'b', b'e', 0, 0, 1, 0,
            1,
        ];
        let deadline = std::time::Instant::now() + STEP;
        let mut buf = [0u8; 512];
        while std::time::Instant::now() < deadline {
            socket.send_to(&query, ("127.0.0.1", port)).unwrap();
            if socket.recv(&mut buf).is_ok() {
                return;
            }
        }
        panic!("dnsmasq did not answer within {STEP:?}");
    }

    /// Rewrites the hosts file and tells dnsmasq to re-read it.
    fn set_hosts(&self, hosts: &str, path: &Path) {
        std::fs::write(path, hosts).unwrap();
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(records: DnsRecords) -> DnsService {
    let mut s = DnsService::new("inventory.shop.svc.cluster.local".parse().unwrap(), records);
    s.identities = vec![ID.parse().unwrap()];
    s
}

fn addresses(snapshot: &Snapshot) -> Vec<(SocketAddr, u32)> {
    snapshot
        .endpoints("inventory.shop.svc.cluster.local")
        .map(|e| e.iter().map(|e| (e.address, e.weight)).collect())
        .unwrap_or_default()
}

async fn wait_for(discovery: &DnsDiscovery, want: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let mut rx = discovery.subscribe();
    tokio::time::timeout(STEP, async {
        loop {
            let current = rx.borrow_and_update().clone();
            if want(&current) {
                return current;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the expected DNS answer never arrived")
}

#[tokio::test]
async fn a_records_are_followed_when_their_ttl_expires() {
    let Some(dns) = Dnsmasq::start("127.0.0.7 inventory.test\n", &[]) else {
        return;
    };
    let config = DnsDiscoveryConfig::new(
        vec![dns.addr],
        vec![service(DnsRecords::Address {
            name: "inventory.test".to_owned(),
            port: 8080,
        })],
    );
    let discovery = DnsDiscovery::start(config).await.unwrap();
    let first = discovery.current();
    assert_eq!(addresses(&first), [("127.0.0.7:8080".parse().unwrap(), 1)]);
    assert_eq!(
        first.endpoints("inventory.shop.svc.cluster.local").unwrap()[0].hbone_port,
        15008
    );

    // The record changes; within a TTL or two the snapshot follows.
    dns.set_hosts(
        "127.0.0.8 inventory.test\n127.0.0.9 inventory.test\n",
        &dns.hosts,
    );
    let later = wait_for(&discovery, |s| addresses(s).len() == 2).await;
    assert_eq!(
        addresses(&later),
        [
            ("127.0.0.8:8080".parse().unwrap(), 1),
            ("127.0.0.9:8080".parse().unwrap(), 1)
        ]
    );
    assert_eq!(discovery.status().last_error, None);
}

#[tokio::test]
async fn srv_records_give_ports_and_weights_and_failures_keep_the_last_answer() {
    let Some(dns) = Dnsmasq::start(
        "127.0.0.21 inv1.test\n127.0.0.22 inv2.test\n127.0.0.23 backup.test\n",
        &[
            "_http._tcp.inventory.test,inv1.test,8080,0,10",
            "_http._tcp.inventory.test,inv2.test,9090,0,30",
            // A higher priority value is a backup: not balanced over.
            "_http._tcp.inventory.test,backup.test,7070,1,10",
        ],
    ) else {
        return;
    };
    let config = DnsDiscoveryConfig::new(
        vec![dns.addr],
        vec![service(DnsRecords::Srv {
            name: "_http._tcp.inventory.test".to_owned(),
        })],
    );
    let discovery = DnsDiscovery::start(config).await.unwrap();
    assert_eq!(
        addresses(&discovery.current()),
        [
            ("127.0.0.21:8080".parse().unwrap(), 10),
            ("127.0.0.22:9090".parse().unwrap(), 30)
        ]
    );

    // The targets' addresses vanish: the lookup fails, the last endpoints stay, the error
    // is reported.
    dns.set_hosts("", &dns.hosts);
    let mut status = discovery.status();
    tokio::time::timeout(STEP, async {
        while status.last_error.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = discovery.status();
        }
    })
    .await
    .expect("the failed lookup was never reported");
    assert!(
        status.last_error.unwrap().contains("inv"),
        "names the failing name"
    );
    assert_eq!(addresses(&discovery.current()).len(), 2);
}

#[tokio::test]
async fn services_without_identities_are_refused() {
    let mut s = service(DnsRecords::Address {
        name: "inventory.test".to_owned(),
        port: 80,
    });
    s.identities.clear();
    let error = DnsDiscovery::start(DnsDiscoveryConfig::new(
        vec!["127.0.0.1:53".parse().unwrap()],
        vec![s],
    ))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("identities"), "{error}");
}

#[tokio::test]
async fn the_mesh_config_discovers_services_through_dns() {
    let Some(dns) = Dnsmasq::start("127.0.0.31 inventory.test\n", &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
identity: {{ spiffe_id: spiffe://cluster.local/ns/shop/sa/orders, dev_ca: {{ dir: {ca} }} }}
discovery:
  dns:
    servers: ["{server}"]
    services:
      - host: inventory.shop.svc.cluster.local
        ports: [{{ port: 8080, protocol: http }}]
        identities: [{ID}]
        a: inventory.test
        port: 8080
"#,
        ca = dir.path().join("ca").display(),
        server = dns.addr,
    );
    let mesh = mesh_client::mesh::Mesh::from_yaml(&yaml).await.unwrap();
    let snapshot = mesh.discovery().current();
    assert_eq!(
        addresses(&snapshot),
        [("127.0.0.31:8080".parse().unwrap(), 1)]
    );
    let service = snapshot
        .service("inventory.shop.svc.cluster.local")
        .unwrap();
    assert_eq!(service.expected_identities[0].as_str(), ID);

    // A service without identities is refused with the field named.
    let bad = yaml.replace(&format!("identities: [{ID}]"), "identities: []");
    let error = mesh_client::mesh::Mesh::from_yaml(&bad).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("discovery.dns.services[0].identities"),
        "{error}"
    );
}
