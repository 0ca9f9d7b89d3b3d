//! [`Runtime`] on a Docker engine, through bollard.
//!
//! Containers are known by their labels (instance, module, what they were
//! made from), never by a remembered id alone: the labels are what lets a
//! restarted daemon adopt its runners. A restart lists them all by label
//! once; later looks inspect the one name forkletd gives a module's runner,
//! and take it only if its labels say it is that module's of this instance.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum,
    HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
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
    /// Every runner as one list at start-up showed them: a restart looks
    /// at a thousand runners with one call to the engine, not one each.
    start_list: Arc<Mutex<Option<StartList>>>,
    /// Runners the start-up list showed under a name forkletd no longer
    /// gives (an older forklet's): a look by name never finds them, so they
    /// are kept here until removed, for every look of their module.
    misnamed: Arc<Mutex<HashMap<ObjectKey, Vec<Seen>>>>,
}

/// How long the start-up list stands for what the engine has: the workers
/// of a restart look at their runners within moments. A runner that died in
/// that window is taken as running, and its health check fails (then the
/// step's retry looks again), as for a runner that dies during any check.
const START_LIST_FRESH: Duration = Duration::from_secs(2);

struct StartList {
    at: Instant,
    runners: HashMap<ObjectKey, Vec<Seen>>,
    /// Modules whose part was taken: any later look asks the engine.
    taken: HashSet<ObjectKey>,
}

impl StartList {
    /// Sorts `listed` by module; runners under another name than `name_of`
    /// gives come back apart (they stand for longer than the list).
    fn new(
        at: Instant,
        listed: impl IntoIterator<Item = Seen>,
        name_of: impl Fn(&ObjectKey) -> String,
    ) -> (Self, HashMap<ObjectKey, Vec<Seen>>) {
        let mut runners: HashMap<ObjectKey, Vec<Seen>> = HashMap::new();
        let mut misnamed: HashMap<ObjectKey, Vec<Seen>> = HashMap::new();
        for seen in listed {
            let Some(key) = seen
                .labels
                .get(LABEL_MODULE)
                .and_then(|m| ObjectKey::parse(m))
            else {
                continue;
            };
            let part = if seen.name == name_of(&key) {
                &mut runners
            } else {
                &mut misnamed
            };
            part.entry(key).or_default().push(seen);
        }
        let list = Self {
            at,
            runners,
            taken: HashSet::new(),
        };
        (list, misnamed)
    }

    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) > START_LIST_FRESH
    }

    /// `key`'s part, once; `None` when it was taken before.
    fn take(&mut self, key: &ObjectKey) -> Option<Vec<Seen>> {
        if !self.taken.insert(key.clone()) {
            return None;
        }
        Some(self.runners.remove(key).unwrap_or_default())
    }
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
            start_list: Arc::default(),
            misnamed: Arc::default(),
        })
    }

    /// Lists every runner of this instance at once, for the first look of
    /// each module's worker (within [`START_LIST_FRESH`]).
    pub async fn list_at_start(&self) -> Result<(), RuntimeError> {
        let labels = [format!("{LABEL_INSTANCE}={}", self.instance)];
        // As old as the moment it was asked for.
        let at = Instant::now();
        let listed = timed_docker("list", async {
            labelled(&self.docker, &labels)
                .await
                .map_err(engine("list containers"))
        })
        .await?;
        let listed = listed.into_iter().filter_map(Seen::listed);
        let (list, misnamed) = StartList::new(at, listed, |key| self.container_name(key));
        *self.start_list.lock().unwrap_or_else(|e| e.into_inner()) = Some(list);
        *self.misnamed.lock().unwrap_or_else(|e| e.into_inner()) = misnamed;
        // Dropped once stale, even if nothing looks again (only this list:
        // a later one stands on its own).
        let start_list = self.start_list.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until((at + START_LIST_FRESH).into()).await;
            let mut list = start_list.lock().unwrap_or_else(|e| e.into_inner());
            if list.as_ref().is_some_and(|list| list.at == at) {
                *list = None;
            }
        });
        Ok(())
    }

    /// `key`'s runners: from the start-up list on the first look, while it
    /// is fresh; then by name, as forkletd makes runners under one name
    /// only (a lookup for the engine, where a label filter goes through
    /// every container it has).
    async fn look(&self, key: &ObjectKey) -> Result<Vec<Seen>, RuntimeError> {
        let mut seen = match self.take_from_start_list(key) {
            Some(listed) => listed,
            // Only this module's runner of this instance: anything else
            // under the name is someone else's, left alone (a create then
            // finds the name taken and says so).
            None => self
                .holder_of_name(key)
                .await?
                .filter(|seen| self.is_ours(&seen.labels, key))
                .into_iter()
                .collect(),
        };
        let misnamed = self.misnamed.lock().unwrap_or_else(|e| e.into_inner());
        for old in misnamed.get(key).into_iter().flatten() {
            // Once renamed to the name of now, it is found by name too.
            if !seen.iter().any(|s| s.id == old.id) {
                seen.push(old.clone());
            }
        }
        Ok(seen)
    }

    /// Whatever container holds the name `key`'s runner is given, whoever
    /// made it.
    async fn holder_of_name(&self, key: &ObjectKey) -> Result<Option<Seen>, RuntimeError> {
        let name = self.container_name(key);
        let inspect = self.docker.inspect_container(&name, None);
        match timed_docker("inspect", inspect).await {
            Ok(info) => Ok(Seen::inspected(info)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(err) => Err(engine("inspect container")(err)),
        }
    }

    /// Whether `labels` are those of `key`'s runner of this instance.
    fn is_ours(&self, labels: &HashMap<String, String>, key: &ObjectKey) -> bool {
        labels.get(LABEL_INSTANCE) == Some(&self.instance)
            && labels.get(LABEL_MODULE) == Some(&key.to_string())
    }

    /// `key`'s runners from the start-up list, once, while it is fresh.
    fn take_from_start_list(&self, key: &ObjectKey) -> Option<Vec<Seen>> {
        let mut guard = self.start_list.lock().unwrap_or_else(|e| e.into_inner());
        let list = guard.as_mut()?;
        if list.stale(Instant::now()) {
            *guard = None;
            return None;
        }
        list.take(key)
    }

    /// The instance id its runners are labelled with.
    pub fn instance(&self) -> &str {
        &self.instance
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

    /// Forgets a misnamed runner once it is gone.
    fn forget_misnamed(&self, id: &str) {
        let mut misnamed = self.misnamed.lock().unwrap_or_else(|e| e.into_inner());
        if misnamed.is_empty() {
            return;
        }
        misnamed.retain(|_, seen| {
            seen.retain(|s| s.id != id);
            !seen.is_empty()
        });
    }

    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.forget_misnamed(id);
                Ok(())
            }
            Err(err) => Err(engine("remove container")(err)),
        }
    }

    /// Pulls `spec`'s image with the registry secret that fits its server,
    /// reporting progress.
    async fn pull_image(
        &self,
        spec: &RunnerSpec,
        progress: Progress<'_>,
    ) -> Result<(), RuntimeError> {
        let image = spec.settings.image.as_str();
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
        // `Always` pulls first. Otherwise (and for a test runner, which is
        // the author's local build) the image is pulled only when the
        // engine has none: found out by creating, not by a look before, so
        // a start costs one round trip fewer.
        let mut pulled = !(spec.trial || pull_policy(&settings.image) == PullPolicy::IfNotPresent);
        if pulled {
            self.pull_image(spec, progress).await?;
        }
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
        let mut freed = false;
        loop {
            let created = self
                .docker
                .create_container(Some(options.clone()), body.clone())
                .await;
            match created {
                Ok(created) => return Ok(created.id),
                // 404 is also a network that is gone: only a missing image is pulled.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) if !pulled && self.docker.inspect_image(&settings.image).await.is_err() => {
                    self.pull_image(spec, progress).await?;
                    pulled = true;
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) if !freed => {
                    self.free_name(&spec.key).await?;
                    freed = true;
                }
                Err(err) => return Err(engine("create container")(err)),
            }
        }
    }

    /// Removes what holds `name`, if it is this module's runner of this
    /// instance (one the list missed, e.g. created by a step that was
    /// interrupted); anything else belongs to someone else and is left alone.
    /// A name freed in the meantime is free.
    async fn free_name(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        match self.holder_of_name(key).await? {
            Some(holder) if !self.is_ours(&holder.labels, key) => {
                Err(RuntimeError::NameTaken { name: holder.name })
            }
            Some(holder) => self.remove(&holder.id).await,
            None => Ok(()),
        }
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
        // A module that exits at once has no port left to publish (and the
        // engine may be restarting it already).
        if let Some(code) = exit_of(info.state.as_ref()) {
            return Err(RuntimeError::StoppedBeforeHealthy {
                id: crate::runtime::short_id(id).to_owned(),
                code,
            });
        }
        let port = info
            .network_settings
            .and_then(|n| published_port(n.ports?))
            .ok_or_else(|| RuntimeError::NoPort { id: id.to_owned() })?;
        Ok(loopback_runner(id, port))
    }
}

impl Runtime for DockerRuntime {
    async fn ensure_runner(
        &self,
        spec: &RunnerSpec,
        progress: Progress<'_>,
    ) -> Result<Runner, RuntimeError> {
        let mut keep = None;
        let name = self.container_name(&spec.key);
        for seen in self.look(&spec.key).await? {
            let label = |name| seen.labels.get(name).map(String::as_str);
            // Under another name (an older forklet's), later looks by name
            // would not find it: it is replaced.
            let matches = seen.name == name
                && label(LABEL_RUNNER_HASH) == Some(spec.settings.runner_hash.as_str())
                && label(LABEL_LAYOUT) == Some(LAYOUT)
                && label(LABEL_NETWORK).unwrap_or("")
                    == spec.settings.network.as_deref().unwrap_or("");
            if matches && keep.is_none() {
                keep = Some(seen);
            } else {
                tracing::info!(module = %spec.key, container = %seen.id, "removing outdated runner");
                timed_docker("remove", self.remove(&seen.id)).await?;
            }
        }
        // Running, with its port: nothing more to ask the engine.
        if let Some(runner) = keep.as_ref().and_then(|seen| seen.running.clone()) {
            return Ok(runner);
        }
        let id = match keep {
            Some(seen) => seen.id,
            None => {
                let id = timed_docker("create", self.create(spec, progress)).await?;
                tracing::debug!(module = %spec.key, "runner created");
                id
            }
        };
        // The port is read after the start: a start may publish it anew.
        let runner = timed_docker("start", self.start(&id)).await?;
        tracing::debug!(module = %spec.key, "runner started");
        Ok(runner)
    }

    async fn stop_runners(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        // The SIGTERM grace a module gets before it is killed.
        let options = StopContainerOptionsBuilder::default().t(10).build();
        for seen in self.look(key).await? {
            let stop = self.docker.stop_container(&seen.id, Some(options.clone()));
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

    async fn stopped(&self, id: &str) -> Option<i64> {
        // A runner the engine is restarting counts as running to a wait:
        // one that exited before the wait began is seen here.
        match self.docker.inspect_container(id, None).await {
            Ok(info) => {
                if let Some(code) = exit_of(info.state.as_ref()) {
                    return code;
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return None,
            Err(_) => {}
        }
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut wait = self.docker.wait_container(id, Some(options));
        match wait.next().await {
            Some(Ok(answer)) => Some(answer.status_code),
            // bollard's word for a non-zero exit code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            Some(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })) => None,
            _ => std::future::pending().await,
        }
    }

    async fn remove_runners(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        // What the start-up list says of this module is not so any more.
        let _ = self.take_from_start_list(key);
        for container in timed_docker("list", self.runners_of(key)).await? {
            if let Some(id) = container.id {
                timed_docker("remove", self.remove(&id)).await?;
            }
        }
        Ok(())
    }
}

/// What a look at the engine showed of one runner.
#[derive(Clone)]
struct Seen {
    id: String,
    name: String,
    labels: HashMap<String, String>,
    /// Set when it runs and publishes the module port on loopback.
    running: Option<Runner>,
}

impl Seen {
    fn listed(container: ContainerSummary) -> Option<Self> {
        let id = container.id?;
        let module_port: u16 = MODULE_PORT.split('/').next()?.parse().ok()?;
        let port = container
            .ports
            .unwrap_or_default()
            .into_iter()
            .find_map(|p| {
                let tcp = p.typ.is_none_or(|t| t.to_string() == "tcp");
                // Where forkletd calls it, as `published_port` reads an inspection.
                let loopback = p.ip.as_deref() == Some("127.0.0.1");
                (tcp && loopback && p.private_port == module_port).then_some(p.public_port?)
            });
        let runs = container.state == Some(ContainerSummaryStateEnum::RUNNING);
        let name = container
            .names
            .unwrap_or_default()
            .into_iter()
            .next()
            .unwrap_or_default();
        Some(Self {
            name: name.trim_start_matches('/').to_owned(),
            running: port.filter(|_| runs).map(|port| loopback_runner(&id, port)),
            labels: container.labels.unwrap_or_default(),
            id,
        })
    }

    fn inspected(info: ContainerInspectResponse) -> Option<Self> {
        let id = info.id?;
        let runs = info.state.and_then(|s| s.running).unwrap_or(false);
        let port = info.network_settings.and_then(|n| published_port(n.ports?));
        Some(Self {
            name: info
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            running: port.filter(|_| runs).map(|port| loopback_runner(&id, port)),
            labels: info.config.and_then(|c| c.labels).unwrap_or_default(),
            id,
        })
    }
}

fn loopback_runner(id: &str, port: u16) -> Runner {
    Runner {
        container_id: id.to_owned(),
        endpoint: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    }
}

/// `Some` (with the exit code, where known) when an inspection shows the
/// container not running, or being restarted after it exited.
fn exit_of(state: Option<&bollard::models::ContainerState>) -> Option<Option<i64>> {
    let state = state?;
    (state.running != Some(true) || state.restarting == Some(true)).then_some(state.exit_code)
}

/// The loopback port the module port is published on, from an
/// inspection: where forkletd calls it (as [`Seen::listed`] reads a list).
fn published_port(mut ports: bollard::models::PortMap) -> Option<u16> {
    let loopback = Ipv4Addr::LOCALHOST.to_string();
    ports
        .remove(MODULE_PORT)
        .flatten()?
        .into_iter()
        .filter(|b| b.host_ip.as_deref() == Some(loopback.as_str()))
        .find_map(|b| b.host_port?.parse::<u16>().ok())
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
    let port = info.network_settings.and_then(|n| published_port(n.ports?));
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

    fn seen(id: &str, name: &str, module: &str) -> Seen {
        Seen {
            id: id.to_owned(),
            name: name.to_owned(),
            labels: HashMap::from([(LABEL_MODULE.to_owned(), module.to_owned())]),
            running: None,
        }
    }

    fn ids(seen: &[Seen]) -> Vec<&str> {
        seen.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_start_list_gives_each_module_its_runners_once_and_goes_stale() {
        let web = ObjectKey::new("default", "web").unwrap();
        let db = ObjectKey::new("default", "db").unwrap();
        let at = Instant::now();
        let listed = [
            seen("1", &container_name("i", &web), "default/web"),
            seen("2", "someone-renamed-it", "no valid key/"),
        ];
        let (mut list, _) = StartList::new(at, listed, |key| container_name("i", key));
        assert_eq!(ids(&list.take(&web).unwrap()), ["1"]);
        assert!(list.take(&web).is_none(), "a second look asks the engine");
        assert_eq!(
            ids(&list.take(&db).unwrap()),
            Vec::<&str>::new(),
            "none: create one"
        );
        assert!(!list.stale(at + START_LIST_FRESH));
        assert!(list.stale(at + START_LIST_FRESH + Duration::from_millis(1)));
    }

    #[test]
    fn runners_under_an_older_name_are_set_apart_from_the_start_list() {
        let web = ObjectKey::new("default", "web").unwrap();
        let listed = [
            seen("new", &container_name("i", &web), "default/web"),
            seen("old", "forklet-i-default-web", "default/web"),
        ];
        let (mut list, misnamed) =
            StartList::new(Instant::now(), listed, |key| container_name("i", key));
        assert_eq!(ids(&list.take(&web).unwrap()), ["new"]);
        assert_eq!(ids(&misnamed[&web]), ["old"]);
    }
}
