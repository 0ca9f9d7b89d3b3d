//! [`Runtime`] on a Docker engine, through bollard.
//!
//! Containers are found by label, never by remembered id alone: the labels
//! are what lets a restarted daemon adopt its runners.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use forklet_state::ObjectKey;
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use futures_util::StreamExt;

use crate::image_ref::{PullPolicy, credentials_for, pull_policy};
use crate::metrics::timed_docker;
use crate::runner_events::RunnerEvents;
use crate::runtime::{
    CONTROLLER_MOUNT, CONTROLLER_SOCKET, Progress, Runner, RunnerSpec, Runtime, RuntimeError,
};

pub const LABEL_INSTANCE: &str = "forklet.instance";
pub const LABEL_MODULE: &str = "forklet.module";
pub const LABEL_RUNNER_HASH: &str = "forklet.runner-hash";
/// How forklet itself lays out a runner (init, mounts, sockets). A runner
/// of an older layout is replaced (not reinstalled) when next adopted.
pub const LABEL_LAYOUT: &str = "forklet.layout";
const LAYOUT: &str = "2";
/// The network a runner was made on, to reach its cluster (empty: the
/// default bridge). A runner on another network than wanted is replaced.
pub const LABEL_NETWORK: &str = "forklet.network";
const MODULE_PORT: &str = "8080/tcp";
/// How long a runner the engine is restarting may take to come back.
const RESTART_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Set apart runners of different state dirs on one engine.
    instance: String,
    /// How long an image pull may go without any progress.
    pull_stall: Duration,
}

impl DockerRuntime {
    /// Connects as the `docker` CLI does (`DOCKER_HOST` or the local socket)
    /// and settles on an API version the engine speaks.
    pub async fn connect(instance: String, pull_stall: Duration) -> Result<Self, RuntimeError> {
        let engine = |detail: bollard::errors::Error| RuntimeError::Engine {
            action: "connect",
            detail: detail.to_string(),
        };
        let docker = match rootless_socket() {
            Some(socket) => {
                tracing::info!(socket = %socket.display(), "using rootless Docker");
                let path = socket.to_string_lossy();
                Docker::connect_with_unix(&path, 120, bollard::API_DEFAULT_VERSION)
            }
            None => Docker::connect_with_defaults(),
        }
        .map_err(engine)?;
        // Without this, engines older than bollard's default API refuse every call.
        let docker = docker.negotiate_version().await.map_err(engine)?;
        docker.ping().await.map_err(engine)?;
        Ok(Self {
            docker,
            instance,
            pull_stall,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// A watcher of this daemon's runners, to run beside the runtime.
    pub fn runner_events(&self) -> RunnerEvents {
        RunnerEvents {
            docker: self.docker.clone(),
            instance: self.instance.clone(),
        }
    }

    pub fn container_name(&self, key: &ObjectKey) -> String {
        container_name(&self.instance, key)
    }

    async fn runners_of(&self, key: &ObjectKey) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let labels = [
            format!("{LABEL_INSTANCE}={}", self.instance),
            format!("{LABEL_MODULE}={key}"),
        ];
        labelled(&self.docker, &labels)
            .await
            .map_err(engine("list containers"))
    }

    /// Every runner of this daemon's instance, with the module it names
    /// (`None`: a name that is no module's, e.g. from before names were
    /// checked).
    pub async fn all_runners(&self) -> Result<Vec<(Option<ObjectKey>, String)>, RuntimeError> {
        let labels = [format!("{LABEL_INSTANCE}={}", self.instance)];
        let containers = labelled(&self.docker, &labels)
            .await
            .map_err(engine("list containers"))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let module = c.labels?.remove(LABEL_MODULE)?;
                Some((ObjectKey::parse(&module), c.id?))
            })
            .collect())
    }

    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(err) => Err(engine("remove container")(err)),
        }
    }

    /// Pulls `spec`'s image if the policy asks for it, with the registry
    /// secret that fits its server, reporting progress.
    async fn ensure_image(
        &self,
        spec: &RunnerSpec,
        progress: Progress<'_>,
    ) -> Result<(), RuntimeError> {
        let image = spec.settings.image.as_str();
        if (spec.trial || pull_policy(image) == PullPolicy::IfNotPresent)
            && self.docker.inspect_image(image).await.is_ok()
        {
            return Ok(());
        }
        let secret = credentials_for(image, &spec.credentials);
        tracing::info!(
            image,
            secret = secret.map(|s| s.name.as_str()),
            "pulling image"
        );
        progress(&format!("pulling image {image}"));
        let credentials = secret.map(|s| DockerCredentials {
            username: Some(s.username.clone()),
            password: Some(s.password.clone()),
            serveraddress: Some(s.server.clone()),
            ..Default::default()
        });
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let started = Instant::now();
        let pulled = self.pull(image, options, credentials, progress).await;
        let outcome = crate::metrics::Outcome::of(&pulled);
        crate::metrics::METRICS.docker("pull", outcome, started.elapsed());
        pulled?;
        tracing::info!(image, "pulled image");
        Ok(())
    }

    /// Follows a pull to its end, failing when it stops making progress.
    async fn pull(
        &self,
        image: &str,
        options: bollard::query_parameters::CreateImageOptions,
        credentials: Option<DockerCredentials>,
        progress: Progress<'_>,
    ) -> Result<(), RuntimeError> {
        let mut pull = self.docker.create_image(Some(options), None, credentials);
        let mut reported = Instant::now();
        loop {
            // A pull that stops making progress (a registry that hangs, a
            // network that went away) fails instead of holding the module.
            let Ok(next) = tokio::time::timeout(self.pull_stall, pull.next()).await else {
                return Err(RuntimeError::Pull {
                    image: image.to_owned(),
                    detail: format!("no progress for {} s", self.pull_stall.as_secs()),
                });
            };
            let Some(step) = next else { break };
            let step = step.map_err(|err| RuntimeError::Pull {
                image: image.to_owned(),
                detail: err.to_string(),
            })?;
            if let Some(message) = step.error_detail.and_then(|e| e.message) {
                return Err(RuntimeError::Pull {
                    image: image.to_owned(),
                    detail: message,
                });
            }
            // A line a second is news; one per layer chunk is noise.
            if reported.elapsed() >= Duration::from_secs(1) {
                reported = Instant::now();
                let mut line =
                    format!("pulling image {image}: {}", step.status.unwrap_or_default());
                if let Some(detail) = step.progress_detail
                    && let (Some(current), Some(total)) = (detail.current, detail.total)
                {
                    line.push_str(&format!(" {} of {} MB", current >> 20, total >> 20));
                }
                progress(&line);
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        spec: &RunnerSpec,
        progress: Progress<'_>,
    ) -> Result<String, RuntimeError> {
        if !spec.missing_secrets.is_empty() {
            return Err(RuntimeError::MissingSecrets(spec.missing_secrets.clone()));
        }
        let settings = &spec.settings;
        self.ensure_image(spec, progress).await?;
        let mut env = vec!["PORT=8080".to_owned()];
        if settings.kubeconfig {
            env.push("KUBECONFIG=/forkspacer/workspace_kubeconfig".to_owned());
        }
        let mut binds = vec![format!("{}:/forkspacer:ro", spec.files_dir.display())];
        if let Some(dir) = &spec.controller_dir {
            env.push(format!("FORKLET_SOCKET={CONTROLLER_SOCKET}"));
            // Read-only: a module may talk to the socket, never replace it.
            binds.push(format!("{}:{CONTROLLER_MOUNT}:ro", dir.display()));
        }
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_owned(), self.instance.clone()),
            (LABEL_MODULE.to_owned(), spec.key.to_string()),
            (LABEL_RUNNER_HASH.to_owned(), settings.runner_hash.clone()),
            (LABEL_LAYOUT.to_owned(), LAYOUT.to_owned()),
            (
                LABEL_NETWORK.to_owned(),
                settings.network.clone().unwrap_or_default(),
            ),
        ]);
        let loopback = PortBinding {
            host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
            host_port: Some(String::new()),
        };
        let host_config = HostConfig {
            binds: Some(binds),
            // Any free port, on loopback only: the module API is not for the network.
            port_bindings: Some(HashMap::from([(
                MODULE_PORT.to_owned(),
                Some(vec![loopback]),
            )])),
            // The engine brings runners back after a reboot even before
            // forkletd starts; a test runner is never brought back.
            restart_policy: Some(RestartPolicy {
                name: Some(match spec.trial {
                    true => RestartPolicyNameEnum::NO,
                    false => RestartPolicyNameEnum::UNLESS_STOPPED,
                }),
                maximum_retry_count: None,
            }),
            // An init as PID 1: a module whose own process ignores SIGTERM
            // (as a Python or Node PID 1 does) still stops at once.
            init: Some(true),
            // On the cluster's network, where Docker's DNS answers the
            // cluster container's name.
            network_mode: settings.network.clone(),
            cpu_shares: settings.cpu_shares,
            memory_reservation: settings.memory_reservation,
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(settings.image.clone()),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(vec![MODULE_PORT.to_owned()]),
            host_config: Some(host_config),
            ..Default::default()
        };
        let name = self.container_name(&spec.key);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            // The name is taken. Only a container labelled as this module's
            // runner of this instance may be replaced (one the list missed,
            // e.g. created by a step that was interrupted); anything else
            // belongs to someone else and is left alone.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                let holder = self
                    .docker
                    .inspect_container(&name, None)
                    .await
                    .map_err(engine("inspect container"))?;
                let labels = holder.config.and_then(|c| c.labels).unwrap_or_default();
                let ours = labels.get(LABEL_INSTANCE) == Some(&self.instance)
                    && labels.get(LABEL_MODULE) == Some(&spec.key.to_string());
                if !ours {
                    return Err(RuntimeError::NameTaken { name });
                }
                self.remove(&name).await?;
                self.docker.create_container(Some(options), body).await
            }
            other => other,
        };
        Ok(created.map_err(engine("create container"))?.id)
    }

    async fn start(&self, id: &str) -> Result<Runner, RuntimeError> {
        // The engine may be restarting a runner that died (restart policy):
        // wait for that rather than fail, for as long as a restart may take.
        let mut waited = Duration::ZERO;
        loop {
            match self.docker.start_container(id, None).await {
                // 304: already running, which is what we want.
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => break,
                Err(err) => {
                    let restarting = self
                        .docker
                        .inspect_container(id, None)
                        .await
                        .ok()
                        .and_then(|info| info.state?.restarting)
                        .unwrap_or(false);
                    if !restarting || waited >= RESTART_WAIT {
                        return Err(engine("start container")(err));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    waited += Duration::from_millis(100);
                }
            }
        }
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(engine("inspect container"))?;
        let port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|mut ports| ports.remove(MODULE_PORT).flatten())
            .and_then(|bindings| {
                bindings
                    .into_iter()
                    .find_map(|b| b.host_port?.parse::<u16>().ok())
            })
            .ok_or_else(|| RuntimeError::NoPort { id: id.to_owned() })?;
        Ok(Runner {
            container_id: id.to_owned(),
            endpoint: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        })
    }
}

impl Runtime for DockerRuntime {
    async fn ensure_runner(
        &self,
        spec: &RunnerSpec,
        progress: Progress<'_>,
    ) -> Result<Runner, RuntimeError> {
        let mut keep = None;
        for container in timed_docker("list", self.runners_of(&spec.key)).await? {
            let Some(id) = container.id else { continue };
            let label = |name| container.labels.as_ref().and_then(|l| l.get(name));
            let network = label(LABEL_NETWORK).map_or("", String::as_str);
            let matches = label(LABEL_RUNNER_HASH) == Some(&spec.settings.runner_hash)
                && label(LABEL_LAYOUT).map(String::as_str) == Some(LAYOUT)
                && network == spec.settings.network.as_deref().unwrap_or("");
            if matches && keep.is_none() {
                keep = Some(id);
            } else {
                tracing::info!(module = %spec.key, container = %id, "removing outdated runner");
                timed_docker("remove", self.remove(&id)).await?;
            }
        }
        let id = match keep {
            Some(id) => id,
            None => timed_docker("create", self.create(spec, progress)).await?,
        };
        // The port is read afresh every time: an engine restart may move it.
        timed_docker("start", self.start(&id)).await
    }

    async fn stop_runners(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        // The SIGTERM grace a module gets before it is killed.
        let options = StopContainerOptionsBuilder::default().t(10).build();
        for container in timed_docker("list", self.runners_of(key)).await? {
            let Some(id) = container.id else { continue };
            let stop = self.docker.stop_container(&id, Some(options.clone()));
            match timed_docker("stop", stop).await {
                // 304: already stopped; 404: gone.
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304 | 404,
                    ..
                }) => {}
                Err(err) => return Err(engine("stop container")(err)),
            }
        }
        Ok(())
    }

    async fn remove_runners(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        for container in timed_docker("list", self.runners_of(key)).await? {
            if let Some(id) = container.id {
                timed_docker("remove", self.remove(&id)).await?;
            }
        }
        Ok(())
    }
}

/// Container `id` as `describe` shows it; `None` when the engine does not
/// answer within a moment or knows no such container.
pub async fn runner_view(docker: &Docker, id: &str) -> Option<forklet_state::api::RunnerView> {
    let inspect = docker.inspect_container(id, None);
    let info = tokio::time::timeout(Duration::from_secs(2), inspect)
        .await
        .ok()?
        .ok()?;
    let state = info.state.unwrap_or_default();
    let port = info
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|mut ports| ports.remove(MODULE_PORT).flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port));
    Some(forklet_state::api::RunnerView {
        container: info
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        endpoint: port.map(|port| format!("127.0.0.1:{port}")),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        // Docker says 0001-01-01T00:00:00Z for a container never started.
        started_at: state
            .started_at
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
            .map(|at| at.with_timezone(&chrono::Utc))
            .filter(|at| at.timestamp() > 0),
    })
}

/// Rootless Docker's socket, where `docker` would not find an engine by
/// itself: no `DOCKER_HOST`, no system socket, and
/// `$XDG_RUNTIME_DIR/docker.sock` there. So the user unit works with either
/// engine without an edit.
fn rootless_socket() -> Option<std::path::PathBuf> {
    if std::env::var_os("DOCKER_HOST").is_some()
        || std::path::Path::new("/var/run/docker.sock").exists()
    {
        return None;
    }
    let socket = std::path::Path::new(&std::env::var_os("XDG_RUNTIME_DIR")?).join("docker.sock");
    socket.exists().then_some(socket)
}

/// `forklet-<instance>-<namespace>_<name>`: `_` is in no Kubernetes name and
/// `-` in no instance id, so two modules never share a container name.
fn container_name(instance: &str, key: &ObjectKey) -> String {
    let short = &instance[..instance.len().min(8)];
    format!("forklet-{short}-{}_{}", key.namespace(), key.name())
}

/// Every container, running or not, that carries all of `labels` (`key=value`).
pub async fn labelled(
    docker: &Docker,
    labels: &[String],
) -> Result<Vec<ContainerSummary>, bollard::errors::Error> {
    let filters = HashMap::from([("label", labels.to_vec())]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(options)).await
}

fn engine(action: &'static str) -> impl Fn(bollard::errors::Error) -> RuntimeError {
    move |err| RuntimeError::Engine {
        action,
        detail: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_whose_names_join_alike_get_different_containers() {
        let a = ObjectKey::new("a-b", "c").unwrap();
        let b = ObjectKey::new("a", "b-c").unwrap();
        assert_ne!(
            container_name("0123456789", &a),
            container_name("0123456789", &b)
        );
        assert_eq!(container_name("0123456789", &a), "forklet-01234567-a-b_c");
    }
}
