//! Relays from runners to an API server on this machine's loopback (k3s on
//! the host, `kubectl port-forward`, minikube's none driver), which no
//! container can reach by itself.
//!
//! A relay listens on the host's address on Docker's default bridge, which
//! other machines have no route to, and forwards bytes only for
//! connections that come from one of this forklet's runners: TLS stays end
//! to end between the module and the API server, and nothing else on the
//! bridge gets at a port that was meant for loopback.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::docker::{LABEL_INSTANCE, LABEL_MODULE, labelled};

/// Connections one relay carries at once.
const MAX_CONNECTIONS: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the runners' addresses serve before they are listed again.
const PEERS_FRESH: Duration = Duration::from_secs(2);

/// Who may use a relay: besides this machine's loopback, the runners of
/// the modules a relay is for (each relay keeps its own list).
#[derive(Clone)]
pub enum Peers {
    /// Containers labelled as this instance's runners, by address (listed
    /// again at most every [`PEERS_FRESH`]).
    Runners {
        docker: Docker,
        instance: String,
        seen: Arc<tokio::sync::Mutex<Option<Seen>>>,
    },
    /// Any (unit tests).
    #[cfg(test)]
    Any,
}

/// Each runner's address with its module (`namespace/name`), and when
/// they were listed.
type Seen = (Instant, HashMap<IpAddr, String>);

/// The modules (`namespace/name`) whose runners a relay serves.
pub type Allowed = Arc<RwLock<HashSet<String>>>;

impl Peers {
    pub fn runners(docker: Docker, instance: String) -> Self {
        Peers::Runners {
            docker,
            instance,
            seen: Arc::default(),
        }
    }

    async fn allows(&self, peer: IpAddr, allowed: &Allowed) -> bool {
        let allowed = |module: &String| {
            allowed
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(module)
        };
        match self {
            Peers::Runners {
                docker,
                instance,
                seen,
            } => {
                let mut seen = seen.lock().await;
                // Fresh only briefly: a runner's address may be another
                // container's once the runner is gone.
                if let Some((at, runners)) = seen.as_ref()
                    && at.elapsed() < PEERS_FRESH
                    && let Some(module) = runners.get(&peer)
                {
                    return allowed(module);
                }
                let labels = [format!("{LABEL_INSTANCE}={instance}")];
                let Ok(containers) = labelled(docker, &labels).await else {
                    return false;
                };
                let mut runners = HashMap::new();
                for container in containers {
                    let Some(module) = container.labels.and_then(|mut l| l.remove(LABEL_MODULE))
                    else {
                        continue;
                    };
                    let networks = container
                        .network_settings
                        .and_then(|n| n.networks)
                        .unwrap_or_default();
                    for endpoint in networks.into_values() {
                        if let Some(ip) = endpoint.ip_address.and_then(|ip| ip.parse().ok()) {
                            runners.insert(ip, module.clone());
                        }
                    }
                }
                let verdict = runners.get(&peer).is_some_and(allowed);
                *seen = Some((Instant::now(), runners));
                verdict
            }
            #[cfg(test)]
            Peers::Any => true,
        }
    }
}

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    allowed: Allowed,
}

/// The relays in use, by the listening address and the target.
#[derive(Clone)]
pub struct Relays {
    running: Arc<Mutex<HashMap<(IpAddr, SocketAddr), Running>>>,
    runtime: tokio::runtime::Handle,
    peers: Peers,
}

impl Relays {
    /// Relays run as tasks on `runtime`; callable from any thread.
    pub fn new(runtime: tokio::runtime::Handle, peers: Peers) -> Self {
        Self {
            running: Arc::default(),
            runtime,
            peers,
        }
    }

    /// The address of a relay on `listen` to `target`, started if needed.
    /// It takes the target's port when that is free, so that the address
    /// runners know survives a daemon restart.
    pub fn ensure(&self, listen: IpAddr, target: SocketAddr) -> io::Result<SocketAddr> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(relay) = running.get(&(listen, target)) {
            return Ok(relay.addr);
        }
        let listener = std::net::TcpListener::bind((listen, target.port()))
            .or_else(|_| std::net::TcpListener::bind((listen, 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let allowed = Allowed::default();
        let relay = Relay {
            target,
            peers: self.peers.clone(),
            allowed: allowed.clone(),
            stop: stop.clone(),
        };
        self.runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => relay.serve(listener).await,
                Err(err) => tracing::warn!(%addr, error = %err, "cannot start a relay"),
            }
        });
        tracing::info!(%addr, %target, "relaying runners to an API server on loopback");
        running.insert(
            (listen, target),
            Running {
                addr,
                stop,
                allowed,
            },
        );
        Ok(addr)
    }

    /// Gives each relay in `keep` the modules it serves, and stops the rest.
    pub fn retain(&self, keep: &HashMap<SocketAddr, HashSet<String>>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|(_, target), relay| {
            let modules = keep.get(&relay.addr);
            if let Some(modules) = modules {
                *relay.allowed.write().unwrap_or_else(|e| e.into_inner()) = modules.clone();
            }
            let kept = modules.is_some();
            if !kept {
                tracing::info!(addr = %relay.addr, %target, "relay no longer used");
                relay.stop.cancel();
            }
            kept
        });
    }

    pub fn stop_all(&self) {
        self.retain(&HashMap::new());
    }
}

/// One relay's task.
struct Relay {
    target: SocketAddr,
    peers: Peers,
    allowed: Allowed,
    stop: CancellationToken,
}

impl Relay {
    async fn serve(self, listener: TcpListener) {
        let this = Arc::new(self);
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // Refusals are logged once per 10 s with a count: anyone on the
        // bridge can knock, and must not flood the log.
        let refusals: Arc<Mutex<(Option<Instant>, u64)>> = Arc::default();
        loop {
            let (inbound, peer) = tokio::select! {
                _ = this.stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(upstream = %this.target, error = %err, "relay cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                continue; // dropped: the client sees a closed connection
            };
            let (this, refusals) = (this.clone(), refusals.clone());
            tokio::spawn(async move {
                let _permit = permit;
                // Or `forklet doctor`, from this machine's loopback (which no
                // other machine can send from, and which reaches the target anyway).
                if !peer.ip().is_loopback() && !this.peers.allows(peer.ip(), &this.allowed).await {
                    let mut refusals = refusals.lock().unwrap_or_else(|e| e.into_inner());
                    refusals.1 += 1;
                    let due = refusals
                        .0
                        .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
                    if due {
                        refusals.0 = Some(Instant::now());
                        tracing::warn!(%peer, upstream = %this.target, refused = refusals.1, "relay refused a connection that is not from a runner of a module it serves");
                    }
                    return;
                }
                let connect = TcpStream::connect(this.target);
                let outbound = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(upstream = %this.target, error = %err, "relay target refused");
                        return;
                    }
                    Err(_) => return,
                };
                let (mut a, mut b) = (inbound, outbound);
                tokio::select! {
                    _ = this.stop.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                }
            });
        }
    }
}

/// Whether something on this machine listens on `addr` (TCP), read from
/// the kernel's socket tables: no connection is made, so the server logs
/// no aborted handshake.
pub fn listening(addr: SocketAddr) -> bool {
    let tables: &[&str] = match addr {
        SocketAddr::V4(_) => &["/proc/net/tcp", "/proc/net/tcp6"],
        SocketAddr::V6(_) => &["/proc/net/tcp6"],
    };
    tables.iter().any(|table| {
        // Read a line at a time: a busy machine's table is long.
        std::fs::File::open(table).is_ok_and(|file| {
            let lines = std::io::BufRead::lines(std::io::BufReader::new(file));
            listens_in(lines.map_while(Result::ok), addr)
        })
    })
}

/// Whether Docker's port proxy holds `port`: a container publishing it is
/// starting (its proxy listens before the engine lists it as running), so
/// what listens there is no server on the host.
pub fn docker_proxy_holds(port: u16) -> bool {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    let wanted = port.to_string();
    processes.flatten().any(|entry| {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(cmdline) = forklet_state::bounded::read_bytes(&entry.path().join("cmdline"), 4096)
        else {
            return false;
        };
        proxies_port(&cmdline, &wanted)
    })
}

/// `cmdline` (NUL-separated) is `docker-proxy ... -host-port PORT ...`.
fn proxies_port(cmdline: &[u8], port: &str) -> bool {
    let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
    let is_proxy = args
        .next()
        .is_some_and(|program| program.rsplit('/').next() == Some("docker-proxy"));
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if arg == "-host-port" && args.peek().is_some_and(|p| p == port) {
            return is_proxy;
        }
    }
    false
}

/// `lines` are a `/proc/net/tcp{,6}` table: is there a socket in LISTEN
/// (`0A`) on `addr`'s port, bound to its address or to every address?
fn listens_in(lines: impl Iterator<Item = impl AsRef<str>>, addr: SocketAddr) -> bool {
    lines.skip(1).any(|line| {
        let line = line.as_ref();
        let mut fields = line.split_whitespace();
        let (Some(local), Some(_remote), Some(state)) =
            (fields.nth(1), fields.next(), fields.next())
        else {
            return false;
        };
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            return false;
        };
        if state != "0A" || u16::from_str_radix(port_hex, 16).ok() != Some(addr.port()) {
            return false;
        }
        match proc_ip(ip_hex) {
            Some(ip) => ip.is_unspecified() || ip == addr.ip() || v4_mapped(ip) == Some(addr.ip()),
            None => false,
        }
    })
}

/// An address as the kernel prints it: 32-bit words in host (little-endian) order.
fn proc_ip(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.swap_bytes().to_be_bytes())
        .collect();
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn v4_mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_kernels_listen_table_is_read_for_the_exact_or_the_wildcard_address() {
        // 127.0.0.1:6443 listening, 0.0.0.0:8443 listening, 127.0.0.1:9000 connected.
        let table = "  sl  local_address rem_address   st\n\
           0: 0100007F:192B 00000000:0000 0A 0\n\
           1: 00000000:20FB 00000000:0000 0A 0\n\
           2: 0100007F:2328 0100007F:A000 01 0\n";
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(listens_in(table.lines(), at("127.0.0.1:6443")));
        assert!(listens_in(table.lines(), at("127.0.0.1:8443")), "wildcard");
        assert!(
            !listens_in(table.lines(), at("127.0.0.1:9000")),
            "not a listener"
        );
        assert!(
            !listens_in(table.lines(), at("127.0.0.2:6443")),
            "another address"
        );
        let v6 = "sl local rem st\n 0: 00000000000000000000000001000000:192B 00000000000000000000000000000000:0000 0A\n";
        assert!(listens_in(v6.lines(), at("[::1]:6443")));
    }

    #[test]
    fn dockers_port_proxy_is_known_by_its_command_line() {
        let proxy = b"/usr/sbin/docker-proxy\0-proto\0tcp\0-host-ip\x00127.0.0.1\0-host-port\x0032971\0-container-port\x006443\0";
        assert!(proxies_port(proxy, "32971"));
        assert!(
            !proxies_port(proxy, "6443"),
            "the container's port is not the host's"
        );
        assert!(!proxies_port(
            b"k3s\0server\0-host-port\x0032971\0",
            "32971"
        ));
    }

    #[tokio::test]
    async fn a_relay_carries_bytes_both_ways_and_stops_when_no_longer_used() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        assert!(listening(target_addr), "seen in the kernel's table");
        let relays = Relays::new(tokio::runtime::Handle::current(), Peers::Any);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        // The target's own port is taken (by the target) on this address: another is chosen.
        let addr = relays.ensure(loopback, target_addr).unwrap();
        assert_ne!(addr, target_addr);
        assert_eq!(
            relays.ensure(loopback, target_addr).unwrap(),
            addr,
            "one relay per target"
        );
        let echo = tokio::spawn(async move {
            let (mut conn, _) = target.accept().await.unwrap();
            let mut buf = [0u8; 5];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf).await.unwrap();
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        echo.await.unwrap();
        relays.stop_all();
        // Stopped: the listening socket goes with its task.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "relay still listening"
            );
            tokio::task::yield_now().await;
        }
    }
}
