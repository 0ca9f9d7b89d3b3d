//! What the engine shows that decides how runners reach a cluster: running
//! containers with their published ports, networks and addresses. Read
//! afresh whenever kubeconfigs are looked at ([`Engine`]), and watched
//! ([`run`]): a cluster created, stopped or moved to another network makes
//! the catalog look at the kubeconfigs again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::route::TOOL_LABELS;
use crate::docker::LABEL_INSTANCE;

/// How often the engine is looked at without an event: only for events
/// lost while the stream was connected (a reconnect looks anyway). Each look
/// lists every running container, runners too: with a thousand of them that
/// costs the engine and forkletd alike.
const REFRESH: Duration = Duration::from_secs(300);
/// Gathers a burst of events (a cluster of several containers starting).
const QUIET: Duration = Duration::from_millis(200);
/// The longest a burst is gathered: runners starting by the hundred must
/// not hold back a look that one of the events asked for.
const MOST_GATHERED: Duration = Duration::from_secs(1);
/// The most containers kept in a view (the engine's answer is read whole
/// before this applies).
const MAX_CONTAINERS: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineView {
    /// Running containers, but forklet's runners: those that could be a cluster.
    pub containers: Vec<ContainerSeen>,
    /// The host's address on Docker's default bridge: where runners reach
    /// forkletd's relays.
    pub bridge_gateway: Option<IpAddr>,
    /// Docker Desktop, whose engine runs in a VM of its own.
    pub desktop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSeen {
    pub id: String,
    pub name: String,
    /// Only the cluster tools' labels.
    pub labels: HashMap<String, String>,
    pub networks: Vec<NetworkSeen>,
    pub ports: Vec<Published>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSeen {
    pub name: String,
    pub ip: Option<IpAddr>,
}

impl NetworkSeen {
    /// Docker's embedded DNS answers containers' names on user-defined
    /// networks only.
    pub fn has_names(&self) -> bool {
        !matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
}

/// A TCP port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `None`: every address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

impl EngineView {
    pub async fn fetch(docker: &Docker) -> Result<Self, bollard::errors::Error> {
        let options = ListContainersOptionsBuilder::default().all(false).build();
        let listed = docker.list_containers(Some(options)).await?;
        let mut containers = listed
            .into_iter()
            .take(MAX_CONTAINERS)
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                let id = c.id?;
                let labels = c.labels.unwrap_or_default();
                if labels.contains_key(LABEL_INSTANCE) {
                    return None;
                }
                let labels = labels
                    .into_iter()
                    .filter(|(k, _)| TOOL_LABELS.contains(&k.as_str()))
                    .collect();
                let mut networks: Vec<NetworkSeen> = c
                    .network_settings
                    .and_then(|n| n.networks)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, endpoint)| NetworkSeen {
                        name,
                        ip: endpoint
                            .ip_address
                            .filter(|ip| !ip.is_empty())
                            .and_then(|ip| ip.parse().ok()),
                    })
                    .collect();
                networks.sort_by(|a, b| a.name.cmp(&b.name));
                let mut ports: Vec<Published> = c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p.typ.as_ref().is_none_or(|t| t.to_string() == "tcp"))
                    .filter_map(|p| {
                        Some(Published {
                            host_ip: p.ip.as_deref().and_then(|ip| ip.parse().ok()),
                            host_port: p.public_port?,
                            container_port: p.private_port,
                        })
                    })
                    .collect();
                ports.sort_by_key(|p| (p.host_port, p.container_port));
                ports.dedup();
                Some(ContainerSeen {
                    id,
                    name,
                    labels,
                    networks,
                    ports,
                })
            })
            .collect::<Vec<_>>();
        // Collected in place, it would keep the whole list's buffer (a
        // thousand runners' summaries, most of a megabyte) for a few clusters.
        containers.shrink_to_fit();
        let bridge_gateway = docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .ok()
            .and_then(|n| n.ipam?.config?.into_iter().find_map(gateway));
        let desktop = docker
            .info()
            .await
            .ok()
            .and_then(|i| i.operating_system)
            .is_some_and(|os| os.contains("Docker Desktop"));
        Ok(Self {
            containers,
            bridge_gateway,
            desktop,
        })
    }
}

/// The host's address on a network: as configured, else the first address
/// of the subnet, which is where Docker puts it.
fn gateway(config: bollard::models::IpamConfig) -> Option<IpAddr> {
    if let Some(gateway) = config.gateway.and_then(|g| g.parse().ok()) {
        return Some(gateway);
    }
    let subnet = config.subnet?;
    let (network, _) = subnet.split_once('/')?;
    match network.parse().ok()? {
        IpAddr::V4(v4) => Some(IpAddr::V4((u32::from(v4) + 1).into())),
        IpAddr::V6(v6) => Some(IpAddr::V6((u128::from(v6) + 1).into())),
    }
}

/// Where the resolver gets its view from.
pub enum Engine {
    /// Read from the engine, at most once per [`FRESH`]: a kubeconfig and
    /// the cluster it names are often rewritten together (`kind create
    /// cluster`), so the view must be as new as the kubeconfig read.
    Docker {
        docker: Docker,
        runtime: tokio::runtime::Handle,
        last: Mutex<Option<(Instant, Arc<EngineView>)>>,
    },
    /// A view that never changes (tests, or no engine).
    Fixed(Arc<EngineView>),
}

/// How long one read of the engine serves: one pass over the kubeconfigs.
const FRESH: Duration = Duration::from_secs(1);

impl Engine {
    pub fn docker(docker: Docker, runtime: tokio::runtime::Handle) -> Self {
        Self::Docker {
            docker,
            runtime,
            last: Mutex::new(None),
        }
    }

    /// The view, read at most [`FRESH`] ago (`fresh`: read now). Blocks:
    /// call it off the async runtime. An engine that cannot be read is an
    /// error, never "no containers": that would send runners elsewhere.
    pub fn view(&self, fresh: bool) -> Result<Arc<EngineView>, String> {
        let (docker, runtime, last) = match self {
            Engine::Fixed(view) => return Ok(view.clone()),
            Engine::Docker {
                docker,
                runtime,
                last,
            } => (docker, runtime, last),
        };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, view)) = last.as_ref()
            && at.elapsed() < FRESH
            && !fresh
        {
            return Ok(view.clone());
        }
        let fetched = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), EngineView::fetch(docker)).await
        });
        let view = match fetched {
            Ok(Ok(view)) => Arc::new(view),
            Ok(Err(err)) => return Err(format!("cannot list the engine's containers: {err}")),
            Err(_) => return Err("the engine did not list its containers within 10 s".into()),
        };
        *last = Some((Instant::now(), view.clone()));
        Ok(view)
    }
}

/// Watches the engine until `shutdown`, sending on `changed` whenever what
/// it shows of clusters changed.
pub async fn run(docker: Docker, changed: mpsc::UnboundedSender<()>, shutdown: CancellationToken) {
    let mut seen: Option<EngineView> = None;
    let filters = HashMap::from([
        ("type", vec!["container".to_owned(), "network".to_owned()]),
        (
            "event",
            ["start", "die", "destroy", "rename", "connect", "disconnect"]
                .map(str::to_owned)
                .to_vec(),
        ),
    ]);
    let mut events = None;
    let mut look = true;
    let mut refresh_at = Instant::now();
    loop {
        if look || Instant::now() >= refresh_at {
            match EngineView::fetch(&docker).await {
                Ok(view) => {
                    if seen.as_ref().is_some_and(|seen| *seen != view) {
                        let _ = changed.send(());
                    }
                    seen = Some(view);
                }
                Err(err) => tracing::warn!(error = %err, "cannot list containers to find clusters"),
            }
            refresh_at = Instant::now() + REFRESH;
        }
        let stream = events.get_or_insert_with(|| {
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            docker.events(Some(options)).boxed()
        });
        look = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(refresh_at.into()) => true,
            event = stream.next() => {
                let Some(Ok(event)) = event else {
                    // Reconnected and looked at again: events may have been lost.
                    events = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    look = true;
                    continue;
                };
                // Runners come and go all the time and are never clusters.
                let matters = |event: &EventMessage| seen.as_ref().is_none_or(|seen| about_clusters(event, seen));
                let mut any = matters(&event);
                // The rest of the burst, then one look if any of it matters.
                let stream = events.as_mut().expect("set above");
                let give_up = Instant::now() + MOST_GATHERED;
                loop {
                    let wait = QUIET.min(give_up.saturating_duration_since(Instant::now()));
                    if wait.is_zero() {
                        break;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        next = tokio::time::timeout(wait, stream.next()) => match next {
                            Ok(Some(Ok(next))) => any |= matters(&next),
                            Err(_) => break,
                            // Ended or failed: followed afresh after a look.
                            Ok(_) => {
                                events = None;
                                any = true;
                                break;
                            }
                        },
                    }
                }
                any
            }
        };
    }
}

/// Whether `event` can change what the view shows: a container event of
/// anything but a forklet runner, or a network event of a container the
/// view lists (a container new to the view starts, which is a container
/// event).
fn about_clusters(event: &EventMessage, seen: &EngineView) -> bool {
    let attributes = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
    match event.typ {
        // Container events carry the container's labels.
        Some(EventMessageTypeEnum::CONTAINER) => {
            !attributes.is_some_and(|a| a.contains_key(LABEL_INSTANCE))
        }
        Some(EventMessageTypeEnum::NETWORK) => {
            let container = attributes.and_then(|a| a.get("container"));
            container.is_none_or(|id| seen.containers.iter().any(|c| c.id == *id))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(typ: EventMessageTypeEnum, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    fn view_with(id: &str) -> EngineView {
        EngineView {
            containers: vec![ContainerSeen {
                id: id.into(),
                name: "dev-control-plane".into(),
                labels: HashMap::new(),
                networks: vec![],
                ports: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_runner_starting_or_joining_a_network_is_no_reason_to_look() {
        let seen = view_with("cluster-id");
        let runner = event(
            EventMessageTypeEnum::CONTAINER,
            &[
                (LABEL_INSTANCE, "0123"),
                ("name", "forklet-0123-default_web"),
            ],
        );
        assert!(!about_clusters(&runner, &seen));
        let joined = event(
            EventMessageTypeEnum::NETWORK,
            &[("container", "runner-id"), ("name", "kind")],
        );
        assert!(!about_clusters(&joined, &seen));
    }

    #[test]
    fn any_other_container_or_a_listed_one_moving_is() {
        let seen = view_with("cluster-id");
        let cluster = event(
            EventMessageTypeEnum::CONTAINER,
            &[("name", "k3d-dev-server-0"), ("k3d.cluster", "dev")],
        );
        assert!(about_clusters(&cluster, &seen));
        let moved = event(
            EventMessageTypeEnum::NETWORK,
            &[("container", "cluster-id"), ("name", "other")],
        );
        assert!(about_clusters(&moved, &seen));
    }
}
