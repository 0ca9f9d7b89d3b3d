//! How the modules of a workspace reach its cluster: the kubeconfig they
//! receive (from a file or a secret, cut to one context, its files
//! embedded, its server pointed where a runner can get to) and the Docker
//! network their runners join.

pub mod doctor;
pub mod engine_view;
pub mod relay;
pub mod route;

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use forklet_state::ObjectKey;
use forklet_state::bounded::{KUBECONFIG_MAX, read_text};
use forklet_state::desired::KubeconfigSource;
use forklet_state::store::Store;
use tokio::sync::watch;

use crate::kubeconfig::{Origin, minify, point_at, server_of};
use engine_view::{Engine, EngineView};
use relay::Relays;
use route::{Route, Server, classify};

/// What the runners of a workspace's modules get, or why they cannot.
pub type Reach = Result<Access, String>;

/// The way to a workspace's cluster, as of the last look.
#[derive(Clone, PartialEq)]
pub struct Access {
    pub route: Route,
    /// The server the runners call.
    pub endpoint: String,
    /// The network runners join (`None`: Docker's default bridge).
    pub network: Option<String>,
    /// Where forkletd relays for them, if it does.
    pub relay: Option<SocketAddr>,
    /// The kubeconfig handed to runners: credentials, never logged.
    pub kubeconfig: String,
}

/// Everything but the credentials.
impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("route", &self.route)
            .field("endpoint", &self.endpoint)
            .field("network", &self.network)
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

impl Access {
    /// How it is reached, in words: shown by `forklet get workspaces`.
    pub fn via(&self) -> String {
        match (&self.route, self.relay) {
            (Route::Direct, _) => "direct".to_owned(),
            (Route::Network { network, .. }, _) => format!("network {network}"),
            (Route::Relay { target }, Some(relay)) => format!("relay {relay} -> {target}"),
            (Route::Relay { target }, None) => format!("relay -> {target}"),
            (Route::DesktopHost { .. }, _) => "host.docker.internal".to_owned(),
        }
    }
}

/// A fingerprint of what runners would get: a change is written into their
/// files (and a new network means a new runner), never a new `/install`.
pub fn stamp(reach: &Reach) -> u64 {
    let mut hasher = DefaultHasher::new();
    match reach {
        Ok(access) => (&access.kubeconfig, &access.network, &access.route).hash(&mut hasher),
        Err(reason) => reason.hash(&mut hasher),
    }
    hasher.finish()
}

/// The last look at every workspace whose modules get a kubeconfig.
pub type Book = Arc<HashMap<ObjectKey, Arc<Reach>>>;

/// Works out [`Access`] for workspaces; used by the catalog, off the async
/// runtime.
pub struct Resolver {
    store: Arc<Store>,
    engine: Engine,
    relays: Option<Relays>,
    /// The relay each workspace's runners were last given: kept while
    /// modules of the workspace are recorded, so that a cluster briefly
    /// not found, or a module removed but not yet uninstalled, keeps its way.
    last_relays: Mutex<HashMap<ObjectKey, SocketAddr>>,
    book: watch::Sender<Book>,
}

impl Resolver {
    pub fn new(store: Arc<Store>, engine: Engine, relays: Option<Relays>) -> Self {
        Self {
            store,
            engine,
            relays,
            last_relays: Mutex::default(),
            book: watch::Sender::new(Book::default()),
        }
    }

    /// The book, as the catalog last published it.
    pub fn book(&self) -> watch::Receiver<Book> {
        self.book.subscribe()
    }

    pub fn resolve(&self, workspace: &ObjectKey, source: &KubeconfigSource) -> Reach {
        let (origin, text) = self.read(workspace, source)?;
        let origin = match &origin {
            Read::File(path) => Origin::File(path),
            Read::Secret(shown) => Origin::Secret(shown),
        };
        let mut config = minify(workspace, origin, &text, source.context.as_deref())
            .map_err(|e| e.to_string())?;
        let written = server_of(&config)
            .ok_or_else(|| {
                format!("workspace {workspace}: the kubeconfig's cluster names no server")
            })?
            .to_owned();
        let server = Server::parse(&written).map_err(|e| format!("workspace {workspace}: {e}"))?;
        let engine = |fresh| {
            self.engine
                .view(fresh)
                .map_err(|e| format!("workspace {workspace}: {e}"))
        };
        // Something listening that is not Docker's proxy for a container
        // just starting.
        let on_host =
            |addr: SocketAddr| relay::listening(addr) && !relay::docker_proxy_holds(addr.port());
        let mut view = engine(false)?;
        let mut route = classify(&server, &view, on_host);
        if !matches!(route, Ok(Route::Direct | Route::Network { .. })) {
            // A loopback port that no container publishes, as of a view up
            // to a second old: a cluster started since (whose proxy already
            // listens) must not be taken for a server on the host.
            view = engine(true)?;
            route = classify(&server, &view, on_host);
        }
        let route = route.map_err(|e| format!("workspace {workspace}: {e}"))?;
        let path = &server.path;
        let (endpoint, network, relay) = match &route {
            Route::Direct => (written.clone(), None, None),
            Route::Network {
                network,
                host,
                port,
                ..
            } => (
                https(host, *port, path),
                // Docker's default bridge is where runners are anyway.
                (network != "bridge").then(|| network.clone()),
                None,
            ),
            Route::Relay { target } => {
                let addr = self
                    .relay(*target, &view)
                    .map_err(|e| format!("workspace {workspace}: {e}"))?;
                let host = addr.ip().to_string();
                (https(&host, addr.port(), path), None, Some(addr))
            }
            Route::DesktopHost { port } => (https("host.docker.internal", *port, path), None, None),
        };
        if endpoint != written {
            point_at(&mut config, &endpoint, &server.host);
        }
        let kubeconfig = serde_yaml::to_string(&config)
            .map_err(|e| format!("workspace {workspace}: kubeconfig: {e}"))?;
        Ok(Access {
            route,
            endpoint,
            network,
            relay,
            kubeconfig,
        })
    }

    /// Publishes the look at every workspace, and stops relays no
    /// workspace uses any more.
    /// `users`: the modules that want each workspace's kubeconfig.
    pub fn publish(
        &self,
        book: HashMap<ObjectKey, Arc<Reach>>,
        mut users: HashMap<ObjectKey, HashSet<ObjectKey>>,
    ) {
        if let Some(relays) = &self.relays {
            let mut last = self.last_relays.lock().unwrap_or_else(|e| e.into_inner());
            for (workspace, reach) in &book {
                match reach.as_ref() {
                    Ok(Access {
                        relay: Some(relay), ..
                    }) => {
                        last.insert(workspace.clone(), *relay);
                    }
                    // Another way now: the runners' kubeconfig is rewritten.
                    Ok(_) => {
                        last.remove(workspace);
                    }
                    Err(_) => {}
                }
            }
            // Modules being uninstalled still need their way to the cluster.
            match self.store.kubeconfig_modules() {
                Ok(recorded) => {
                    for (workspace, module) in recorded {
                        users.entry(workspace).or_default().insert(module);
                    }
                    last.retain(|w, _| book.contains_key(w) || users.contains_key(w));
                }
                // Unsure who still needs one: keep them all.
                Err(err) => tracing::warn!(error = %err, "cannot read which modules use a relay"),
            }
            let mut keep: HashMap<SocketAddr, HashSet<String>> = HashMap::new();
            for (workspace, relay) in last.iter() {
                let served = keep.entry(*relay).or_default();
                let modules = users.get(workspace).into_iter().flatten();
                served.extend(modules.map(ObjectKey::to_string));
            }
            relays.retain(&keep);
        }
        self.book.send_replace(Arc::new(book));
    }

    fn relay(&self, target: SocketAddr, view: &EngineView) -> Result<SocketAddr, String> {
        let Some(relays) = &self.relays else {
            return Err(format!(
                "{target} is on this machine's loopback, and no relay runs here"
            ));
        };
        let Some(gateway) = view.bridge_gateway else {
            return Err(format!(
                "{target} is on this machine's loopback; forklet relays to it from Docker's \
                 default bridge, which has no gateway address here"
            ));
        };
        relays
            .ensure(gateway, target)
            .map_err(|e| format!("cannot relay {gateway} to {target}: {e}"))
    }

    fn read(
        &self,
        workspace: &ObjectKey,
        source: &KubeconfigSource,
    ) -> Result<(Read, String), String> {
        if let Some(reference) = &source.secret {
            let shown = format!("secret {}, key {}", reference.name, reference.key);
            let fail = |why: String| format!("workspace {workspace}: kubeconfig {shown}: {why}");
            let secret = self
                .store
                .generic_secret(&reference.name)
                .map_err(|e| fail(e.to_string()))?
                .ok_or_else(|| {
                    fail(format!(
                        "no such secret (create it: forklet secret create generic {} \
                         --from-file={}=PATH)",
                        reference.name, reference.key
                    ))
                })?;
            if let Some(namespace) = &reference.namespace
                && *namespace != secret.namespace
            {
                return Err(fail(format!(
                    "the secret is in namespace {}, not {namespace}",
                    secret.namespace
                )));
            }
            let bytes = secret.data.get(&reference.key).ok_or_else(|| {
                let keys: Vec<&str> = secret.data.keys().map(String::as_str).collect();
                fail(format!(
                    "the secret has no such key (it has: {})",
                    keys.join(", ")
                ))
            })?;
            let text =
                String::from_utf8(bytes.clone()).map_err(|_| fail("not UTF-8 text".to_owned()))?;
            return Ok((Read::Secret(shown), text));
        }
        let path = match &source.path {
            Some(path) => path.clone(),
            None => default_kubeconfig().ok_or_else(|| {
                format!(
                    "workspace {workspace}: no kubeconfig path: neither KUBECONFIG nor HOME is set"
                )
            })?,
        };
        let text = read_text(&path, KUBECONFIG_MAX).map_err(|e| {
            format!(
                "workspace {workspace}: no kubeconfig: {} cannot be read: {e}",
                path.display()
            )
        })?;
        Ok((Read::File(path), text))
    }
}

enum Read {
    File(PathBuf),
    Secret(String),
}

fn https(host: &str, port: u16, path: &str) -> String {
    match host.contains(':') {
        true => format!("https://[{host}]:{port}{path}"),
        false => format!("https://{host}:{port}{path}"),
    }
}

/// What kubectl would use: the first entry of `$KUBECONFIG`, else `~/.kube/config`.
fn default_kubeconfig() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Some(first);
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube").join("config"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use forklet_state::manifest::SecretReference;
    use forklet_state::store::GenericSecret;
    use serde_yaml::Value;

    use super::engine_view::{ContainerSeen, NetworkSeen, Published};
    use super::*;

    const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: kind-dev\nclusters:\n- name: kind-dev\n  cluster: {server: 'https://127.0.0.1:41234', certificate-authority-data: Q0E=}\ncontexts:\n- name: kind-dev\n  context: {cluster: kind-dev, user: kind-dev}\nusers:\n- name: kind-dev\n  user: {token: s3cret-token}\n";

    fn kind_view() -> EngineView {
        EngineView {
            containers: vec![ContainerSeen {
                id: "0123abcd".into(),
                name: "dev-control-plane".into(),
                labels: Default::default(),
                networks: vec![NetworkSeen {
                    name: "kind".into(),
                    ip: Some("172.18.0.2".parse().unwrap()),
                }],
                ports: vec![Published {
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_port: 41234,
                    container_port: 6443,
                }],
            }],
            ..EngineView::default()
        }
    }

    fn resolver(dir: &tempfile::TempDir) -> Resolver {
        let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        Resolver::new(store, Engine::Fixed(Arc::new(kind_view())), None)
    }

    fn from_secret(name: &str, namespace: Option<&str>, key: &str) -> KubeconfigSource {
        KubeconfigSource {
            path: None,
            secret: Some(SecretReference {
                name: name.into(),
                namespace: namespace.map(str::to_owned),
                key: key.into(),
            }),
            context: None,
        }
    }

    fn ws() -> ObjectKey {
        ObjectKey::new("default", "dev").unwrap()
    }

    #[test]
    fn a_kind_kubeconfig_from_a_secret_points_into_the_clusters_network_and_keeps_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = resolver(&dir);
        resolver
            .store
            .create_generic_secret(&GenericSecret {
                name: "kind-dev".into(),
                namespace: "default".into(),
                data: BTreeMap::from([("kubeconfig".to_owned(), KUBECONFIG.as_bytes().to_vec())]),
            })
            .unwrap();
        let access = resolver
            .resolve(
                &ws(),
                &from_secret("kind-dev", Some("default"), "kubeconfig"),
            )
            .unwrap();
        assert_eq!(access.endpoint, "https://dev-control-plane:6443");
        assert_eq!(access.network.as_deref(), Some("kind"));
        assert_eq!(access.via(), "network kind");
        let written: Value = serde_yaml::from_str(&access.kubeconfig).unwrap();
        let cluster = &written["clusters"][0]["cluster"];
        assert_eq!(
            cluster["server"].as_str(),
            Some("https://dev-control-plane:6443")
        );
        assert_eq!(cluster["tls-server-name"].as_str(), Some("127.0.0.1"));
        assert_eq!(cluster["certificate-authority-data"].as_str(), Some("Q0E="));
        assert!(
            !format!("{access:?}").contains("s3cret-token"),
            "never in Debug"
        );

        // A name the kubeconfig already checks against is kept.
        let named = KUBECONFIG.replace(
            "certificate-authority-data: Q0E=}",
            "certificate-authority-data: Q0E=, tls-server-name: kubernetes}",
        );
        let path = dir.path().join("kc");
        std::fs::write(&path, named).unwrap();
        let file = KubeconfigSource {
            path: Some(path),
            secret: None,
            context: None,
        };
        let access = resolver.resolve(&ws(), &file).unwrap();
        let written: Value = serde_yaml::from_str(&access.kubeconfig).unwrap();
        assert_eq!(
            written["clusters"][0]["cluster"]["tls-server-name"].as_str(),
            Some("kubernetes")
        );
    }

    #[test]
    fn a_secret_that_cannot_serve_says_why_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let resolver = resolver(&dir);
        let err = |source| resolver.resolve(&ws(), &source).unwrap_err();
        assert_eq!(
            err(from_secret("nope", None, "kubeconfig")),
            "workspace default/dev: kubeconfig secret nope, key kubeconfig: no such secret (create it: forklet secret create generic nope --from-file=kubeconfig=PATH)"
        );
        resolver
            .store
            .create_generic_secret(&GenericSecret {
                name: "kc".into(),
                namespace: "team".into(),
                data: BTreeMap::from([
                    ("config".to_owned(), KUBECONFIG.as_bytes().to_vec()),
                    ("binary".to_owned(), vec![0xff, 0xfe]),
                ]),
            })
            .unwrap();
        assert_eq!(
            err(from_secret("kc", Some("default"), "config")),
            "workspace default/dev: kubeconfig secret kc, key config: the secret is in namespace team, not default"
        );
        assert_eq!(
            err(from_secret("kc", None, "kubeconfig")),
            "workspace default/dev: kubeconfig secret kc, key kubeconfig: the secret has no such key (it has: binary, config)"
        );
        assert_eq!(
            err(from_secret("kc", None, "binary")),
            "workspace default/dev: kubeconfig secret kc, key binary: not UTF-8 text"
        );
        assert!(
            resolver
                .resolve(&ws(), &from_secret("kc", Some("team"), "config"))
                .is_ok()
        );
    }
}
