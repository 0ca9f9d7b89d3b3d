//! Where a workspace's API server really is, seen from a runner.
//!
//! kind, k3d and minikube write kubeconfigs for the host: `127.0.0.1`,
//! `0.0.0.0` or an address on the tool's own Docker network. From a
//! container on Docker's default bridge none of those lead anywhere, so the
//! server address is matched against what the engine shows (published
//! ports, container addresses and names) and a way there is chosen that
//! keeps TLS verified: the certificate is still checked against the name
//! the kubeconfig used on the host (`tls-server-name`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::engine_view::{ContainerSeen, EngineView};

/// Tie-breakers when more than one container could be the cluster.
pub const TOOL_LABELS: [&str; 3] = [
    "io.x-k8s.kind.cluster",
    "k3d.cluster",
    "name.minikube.sigs.k8s.io",
];

/// The server of a kubeconfig, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// As written, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// A path prefix (a proxy's `/k8s/clusters/x`), or empty.
    pub path: String,
}

impl Server {
    /// `https://host[:port][/path]`; plain `http` is refused, as is anything
    /// that is not an absolute URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        // Messages show the URL without any credentials written into it.
        let shown = redacted(url);
        let url_shown = &shown;
        let uri: axum::http::Uri = url
            .parse()
            .map_err(|e| format!("server {url_shown:?} is not a URL: {e}"))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) || shown != url {
            return Err(format!(
                "server {url_shown:?} carries credentials in its URL: put them in the \
                 kubeconfig's user instead"
            ));
        }
        let url = url_shown;
        match uri.scheme_str() {
            Some("https") => {}
            Some(other) => {
                return Err(format!(
                    "server {url:?} uses {other}: forklet hands modules only https servers"
                ));
            }
            None => return Err(format!("server {url:?} is not an absolute https URL")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("server {url:?} names no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Self {
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(443),
            path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The address, if the host is one (`::ffff:127.0.0.1` is 127.0.0.1).
    fn ip(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        self.host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

/// `url` with anything between `//` and the last `@` before the path
/// (a `user:password@`) replaced by `***`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("//") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}//***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// How a runner reaches the API server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// As written: a remote address, or a name the runner resolves itself.
    Direct,
    /// The cluster runs in a local container: the runner joins `network`
    /// and calls `host:port` there (the container's name, or its address
    /// on a network without names).
    Network {
        network: String,
        container: String,
        host: String,
        port: u16,
        /// The container's address on that network, as last seen.
        address: Option<IpAddr>,
    },
    /// A server on this machine's loopback that no container publishes:
    /// forkletd relays to it from an address only runners can reach.
    Relay { target: SocketAddr },
    /// Docker Desktop: the engine's VM reaches the host's loopback as
    /// `host.docker.internal`.
    DesktopHost { port: u16 },
}

/// Chooses the route to `server`. `listening` says whether something on
/// this machine accepts connections at an address (no connection is made).
pub fn classify(
    server: &Server,
    view: &EngineView,
    listening: impl Fn(SocketAddr) -> bool,
) -> Result<Route, String> {
    let Some(ip) = server.ip() else {
        // A name: the container of that name on a network with names, or
        // something DNS resolves (left alone).
        return Ok(
            match view.containers.iter().find(|c| c.name == server.host) {
                Some(container) => network_route(container, None, server.port)?,
                None => Route::Direct,
            },
        );
    };
    if ip.is_loopback() || ip.is_unspecified() {
        let publishers = publishers(view, ip, server.port);
        if let Some(container) = pick(&publishers, server)? {
            let inside = container
                .ports
                .iter()
                .find(|p| p.host_port == server.port && binds_loopback(p.host_ip, ip))
                .map(|p| p.container_port)
                .unwrap_or(server.port);
            return network_route(container, None, inside);
        }
        let target = SocketAddr::new(
            if ip.is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                ip
            },
            server.port,
        );
        if view.desktop {
            return Ok(Route::DesktopHost { port: server.port });
        }
        if listening(target) {
            return Ok(Route::Relay { target });
        }
        return Err(format!(
            "nothing serves {}: no running container publishes port {} and nothing on this \
             machine listens there. Is the cluster running? (kind get clusters, k3d cluster list, \
             minikube status); if it was recreated, its kubeconfig may be out of date",
            server.authority(),
            server.port
        ));
    }
    let owners: Vec<&ContainerSeen> = view
        .containers
        .iter()
        .filter(|c| c.networks.iter().any(|n| n.ip == Some(ip)))
        .collect();
    match pick(&owners, server)? {
        Some(container) => network_route(container, Some(ip), server.port),
        None => Ok(Route::Direct),
    }
}

/// Running containers (not forklet's own runners) that publish `port` on
/// an address a connection to `ip` reaches.
fn publishers(view: &EngineView, ip: IpAddr, port: u16) -> Vec<&ContainerSeen> {
    view.containers
        .iter()
        .filter(|c| {
            c.ports
                .iter()
                .any(|p| p.host_port == port && binds_loopback(p.host_ip, ip))
        })
        .collect()
}

/// Whether a port published on `bound` answers a connection to `wanted`
/// (a loopback or unspecified address).
fn binds_loopback(bound: Option<IpAddr>, wanted: IpAddr) -> bool {
    // A connection to 0.0.0.0 (or ::) goes to the loopback address.
    let wanted = match wanted {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match bound.map(|b| b.to_canonical()) {
        None => true,
        Some(bound) => bound.is_unspecified() || bound == wanted,
    }
}

/// One container out of those that could be the cluster: the only one, or
/// the only one a cluster tool labelled.
fn pick<'a>(
    candidates: &[&'a ContainerSeen],
    server: &Server,
) -> Result<Option<&'a ContainerSeen>, String> {
    match candidates {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => {
            let labelled: Vec<&&ContainerSeen> = many
                .iter()
                .filter(|c| TOOL_LABELS.iter().any(|l| c.labels.contains_key(*l)))
                .collect();
            match labelled.as_slice() {
                [one] => Ok(Some(one)),
                _ => Err(format!(
                    "{} could be any of the containers {}: forklet cannot tell which is the \
                     cluster (stop the others, or name the container in the kubeconfig's server)",
                    server.authority(),
                    many.iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
}

/// Into `container`'s network: by name on a network with names (every
/// user-defined one), by its address on Docker's default bridge.
fn network_route(
    container: &ContainerSeen,
    on_ip: Option<IpAddr>,
    port: u16,
) -> Result<Route, String> {
    let chosen = match on_ip {
        Some(ip) => container.networks.iter().find(|n| n.ip == Some(ip)),
        None => container
            .networks
            .iter()
            .find(|n| n.has_names())
            .or_else(|| container.networks.iter().find(|n| n.ip.is_some())),
    };
    let Some(network) = chosen else {
        return Err(format!(
            "container {} runs the cluster but is on no network a runner can join (host \
             networking?)",
            container.name
        ));
    };
    let host = match (network.has_names(), network.ip) {
        (true, _) => container.name.clone(),
        (false, Some(ip)) => ip.to_string(),
        (false, None) => {
            return Err(format!(
                "container {} has no address on network {}",
                container.name, network.name
            ));
        }
    };
    Ok(Route::Network {
        network: network.name.clone(),
        container: container.name.clone(),
        host,
        port,
        address: network.ip,
    })
}

#[cfg(test)]
mod tests {
    use super::super::engine_view::{NetworkSeen, Published};
    use super::*;
    use std::collections::HashMap;

    fn server(url: &str) -> Server {
        Server::parse(url).unwrap()
    }

    fn container(name: &str, network: &str, ip: &str, ports: &[(&str, u16, u16)]) -> ContainerSeen {
        ContainerSeen {
            id: format!("id-of-{name}"),
            name: name.into(),
            labels: HashMap::new(),
            networks: vec![NetworkSeen {
                name: network.into(),
                ip: Some(ip.parse().unwrap()),
            }],
            ports: ports
                .iter()
                .map(|(host_ip, host_port, container_port)| Published {
                    host_ip: host_ip.parse().ok(),
                    host_port: *host_port,
                    container_port: *container_port,
                })
                .collect(),
        }
    }

    fn view(containers: Vec<ContainerSeen>) -> EngineView {
        EngineView {
            containers,
            ..EngineView::default()
        }
    }

    fn nothing_listens(_: SocketAddr) -> bool {
        false
    }

    #[test]
    fn kind_publishes_on_loopback_and_is_reached_by_name_on_its_network() {
        let kind = container(
            "dev-control-plane",
            "kind",
            "172.18.0.2",
            &[("127.0.0.1", 41234, 6443)],
        );
        let route = classify(
            &server("https://127.0.0.1:41234"),
            &view(vec![kind]),
            nothing_listens,
        );
        assert_eq!(
            route,
            Ok(Route::Network {
                network: "kind".into(),
                container: "dev-control-plane".into(),
                host: "dev-control-plane".into(),
                port: 6443,
                address: Some("172.18.0.2".parse().unwrap()),
            })
        );
    }

    #[test]
    fn k3d_publishes_on_every_address_and_is_found_from_0_0_0_0_or_localhost() {
        let lb = container(
            "k3d-dev-serverlb",
            "k3d-dev",
            "172.19.0.3",
            &[("0.0.0.0", 39000, 6443)],
        );
        let view = view(vec![lb]);
        for url in ["https://0.0.0.0:39000", "https://localhost:39000"] {
            let Ok(Route::Network { network, host, .. }) =
                classify(&server(url), &view, nothing_listens)
            else {
                panic!("{url}: not routed into the network");
            };
            assert_eq!(
                (network.as_str(), host.as_str()),
                ("k3d-dev", "k3d-dev-serverlb")
            );
        }
    }

    #[test]
    fn minikube_is_a_container_address_on_its_own_network() {
        let mk = container("minikube", "minikube", "192.168.49.2", &[]);
        let route = classify(
            &server("https://192.168.49.2:8443"),
            &view(vec![mk]),
            nothing_listens,
        );
        assert_eq!(
            route,
            Ok(Route::Network {
                network: "minikube".into(),
                container: "minikube".into(),
                host: "minikube".into(),
                port: 8443,
                address: Some("192.168.49.2".parse().unwrap()),
            })
        );
    }

    #[test]
    fn on_the_default_bridge_a_container_is_called_by_its_address() {
        let c = container("api", "bridge", "172.17.0.5", &[("127.0.0.1", 6443, 6443)]);
        let Ok(Route::Network { host, .. }) = classify(
            &server("https://127.0.0.1:6443"),
            &view(vec![c]),
            nothing_listens,
        ) else {
            panic!("not routed");
        };
        assert_eq!(host, "172.17.0.5");
    }

    #[test]
    fn loopback_that_no_container_publishes_is_relayed_if_something_listens() {
        let target: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        assert_eq!(
            classify(&server("https://127.0.0.1:6443"), &view(vec![]), |a| a
                == target),
            Ok(Route::Relay { target })
        );
        assert_eq!(
            classify(&server("https://0.0.0.0:6443"), &view(vec![]), |a| a
                == target),
            Ok(Route::Relay { target }),
            "0.0.0.0 from a client means this machine"
        );
        let err = classify(
            &server("https://127.0.0.1:6443"),
            &view(vec![]),
            nothing_listens,
        )
        .unwrap_err();
        assert!(err.starts_with("nothing serves 127.0.0.1:6443:"), "{err}");
    }

    #[test]
    fn docker_desktop_reaches_the_host_by_its_name() {
        let desktop = EngineView {
            desktop: true,
            ..EngineView::default()
        };
        assert_eq!(
            classify(&server("https://127.0.0.1:6443"), &desktop, nothing_listens),
            Ok(Route::DesktopHost { port: 6443 })
        );
    }

    #[test]
    fn remote_servers_are_left_alone() {
        let view = view(vec![container("api", "bridge", "172.17.0.9", &[])]);
        for url in [
            "https://10.1.2.3:6443",
            "https://api.example.com",
            "https://[2001:db8::1]:6443",
        ] {
            assert_eq!(
                classify(&server(url), &view, nothing_listens),
                Ok(Route::Direct),
                "{url}"
            );
        }
    }

    #[test]
    fn two_candidates_are_told_apart_by_a_tool_label_or_named() {
        let a = container("a", "n1", "172.20.0.2", &[("0.0.0.0", 6443, 6443)]);
        let mut b = container("b", "n2", "172.21.0.2", &[("127.0.0.1", 6443, 6443)]);
        let err = classify(
            &server("https://127.0.0.1:6443"),
            &view(vec![a.clone(), b.clone()]),
            nothing_listens,
        )
        .unwrap_err();
        assert!(err.contains("could be any of the containers a, b"), "{err}");
        b.labels
            .insert("io.x-k8s.kind.cluster".into(), "dev".into());
        let Ok(Route::Network { container, .. }) = classify(
            &server("https://127.0.0.1:6443"),
            &view(vec![a, b]),
            nothing_listens,
        ) else {
            panic!("not routed");
        };
        assert_eq!(container, "b");
    }

    #[test]
    fn servers_are_parsed_strictly() {
        assert_eq!(
            server("https://[::1]:6443/prefix"),
            Server {
                host: "::1".into(),
                port: 6443,
                path: "/prefix".into()
            }
        );
        assert_eq!(server("https://example.com").port, 443);
        assert!(
            Server::parse("http://127.0.0.1:8080")
                .unwrap_err()
                .contains("only https")
        );
        assert!(Server::parse("127.0.0.1:6443").is_err());
        for url in [
            "https://admin:hunter2@127.0.0.1:6443",
            "http://admin:hunter2@x",
        ] {
            let err = Server::parse(url).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("***@"), "{err}");
        }
    }
}
