//! Drives every module from what forklet knows towards what the manifests
//! ask for.
//!
//! One worker task per module holds the only copy of that module's record in
//! flight, so there is never more than one operation per module. It reads
//! its intent from a `watch` channel: a burst of edits coalesces into the
//! latest value. A semaphore bounds how many modules act at once. Every
//! phase change is committed to the store before the next step starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use forklet_state::ObjectKey;
use forklet_state::desired::{DesiredModule, DesiredState};
use forklet_state::manifest::Kind;
use forklet_state::store::{ModuleRecord, Phase, RunnerSettings, Store, StoreError};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::fault::crash_point;
use crate::hibernation::Hibernation;
use crate::plan::{Action, Intent, plan, settled};
use crate::protocol::{CallError, ModuleClient, Operation};
use crate::runner_files::{FilesError, RunnerFiles};
use crate::runtime::{Runner, RunnerSpec, Runtime, RuntimeError};

/// What every worker shares.
pub struct Context<R> {
    pub store: Arc<Store>,
    pub runtime: R,
    pub client: ModuleClient,
    pub files: RunnerFiles,
    pub permits: Semaphore,
    pub shutdown: CancellationToken,
    /// The directory of the control socket that `controller` runners get.
    pub controller_dir: PathBuf,
    pub backoff: Backoff,
    /// How long a module must stay absent from every manifest before it is
    /// uninstalled: files vanish for a moment under editors, `git checkout`
    /// and `rsync`.
    pub removal_grace: Duration,
    /// Stop a module's runner once `/sleep` succeeded (and start it again
    /// to resume): an asleep module then costs nothing but disk.
    pub stop_runners_while_asleep: bool,
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the control API and the engine watcher ask of the reconciler.
#[derive(Debug)]
pub enum Command {
    /// Try a failed module's step now; answers whether the module is known.
    Retry(ObjectKey, oneshot::Sender<bool>),
    /// A runner container changed under us: it died, was removed, restarted.
    RunnerChanged(ObjectKey),
    /// Any runner may have changed: the engine restarted or was unreachable.
    AllRunnersChanged,
    /// Forget a module whose manifest is gone, without calling `/uninstall`.
    ForceDelete(ObjectKey, oneshot::Sender<Result<(), ForgetError>>),
}

/// Why a module cannot be forgotten.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("module {0} not found")]
    NotFound(ObjectKey),
    #[error("{file} still defines module {key}: delete it from there first")]
    StillDefined { key: ObjectKey, file: PathBuf },
    #[error("forgetting module {key}: {detail}")]
    Failed { key: ObjectKey, detail: String },
}

/// What a worker is told besides its intent.
#[derive(Debug)]
enum Signal {
    Retry,
    RunnerChanged,
    ForceDelete(oneshot::Sender<Result<(), ForgetError>>),
}

struct WorkerHandle {
    intent: watch::Sender<Intent>,
    signals: mpsc::UnboundedSender<Signal>,
}

pub struct Supervisor<R> {
    ctx: Arc<Context<R>>,
    workers: HashMap<ObjectKey, WorkerHandle>,
    /// The manifest problems last written to each module's history.
    problems_noted: HashMap<ObjectKey, String>,
    /// Modules no manifest names, since when; removed once the grace is over.
    absent: HashMap<ObjectKey, Instant>,
    tasks: JoinSet<()>,
    exits: (
        mpsc::UnboundedSender<ObjectKey>,
        mpsc::UnboundedReceiver<ObjectKey>,
    ),
}

impl<R: Runtime> Supervisor<R> {
    pub fn new(ctx: Arc<Context<R>>) -> Self {
        Self {
            ctx,
            workers: HashMap::new(),
            problems_noted: HashMap::new(),
            absent: HashMap::new(),
            tasks: JoinSet::new(),
            exits: mpsc::unbounded_channel(),
        }
    }

    /// Runs until shutdown, then waits for every worker to stop.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Arc<DesiredState>>,
        mut hibernation: watch::Receiver<Arc<Hibernation>>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), StoreError> {
        // Modules recorded before a restart get a worker even when no
        // manifest names them any more: that is how they get uninstalled.
        let recorded: Vec<ObjectKey> = self
            .ctx
            .store
            .modules()?
            .into_iter()
            .map(|r| r.key)
            .collect();
        let state = desired.borrow_and_update().clone();
        self.apply(&state, &hibernation.borrow_and_update(), recorded);
        loop {
            let grace_over = self
                .absent
                .values()
                .min()
                .map(|since| *since + self.ctx.removal_grace);
            let removal_due = async {
                match grace_over {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                _ = removal_due => {
                    let state = desired.borrow().clone();
                    self.apply(&state, &hibernation.borrow(), Vec::new());
                }
                changed = desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let state = desired.borrow_and_update().clone();
                    self.apply(&state, &hibernation.borrow(), Vec::new());
                }
                changed = hibernation.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let state = desired.borrow().clone();
                    self.apply(&state, &hibernation.borrow_and_update(), Vec::new());
                }
                Some(key) = self.exits.1.recv() => self.on_exit(key),
                Some(command) = commands.recv() => self.command(command),
            }
        }
        while self.tasks.join_next().await.is_some() {}
        Ok(())
    }

    fn command(&mut self, command: Command) {
        let signal =
            |workers: &HashMap<ObjectKey, WorkerHandle>, key: &ObjectKey, signal: Signal| {
                workers
                    .get(key)
                    .map(|w| w.signals.send(signal).is_ok())
                    .unwrap_or(false)
            };
        match command {
            Command::Retry(key, reply) => {
                let _ = reply.send(signal(&self.workers, &key, Signal::Retry));
            }
            Command::RunnerChanged(key) => {
                signal(&self.workers, &key, Signal::RunnerChanged);
            }
            Command::AllRunnersChanged => {
                for worker in self.workers.values() {
                    let _ = worker.signals.send(Signal::RunnerChanged);
                }
            }
            Command::ForceDelete(key, reply) => match self.workers.get(&key) {
                Some(worker) => {
                    if let Err(mpsc::error::SendError(Signal::ForceDelete(reply))) =
                        worker.signals.send(Signal::ForceDelete(reply))
                    {
                        let _ = reply.send(Err(ForgetError::NotFound(key)));
                    }
                }
                None => {
                    let _ = reply.send(Err(ForgetError::NotFound(key)));
                }
            },
        }
    }

    fn apply(&mut self, state: &DesiredState, hibernation: &Hibernation, recorded: Vec<ObjectKey>) {
        self.note_problems(state);
        for (key, module) in &state.modules {
            // What the worker acts on: asleep for any reason, not only its manifest's.
            let mut module = module.clone();
            module.hibernated = hibernation.module(&module, state).is_some();
            self.send(key.clone(), Intent::Run(Arc::new(module)));
        }
        let others: Vec<ObjectKey> = self
            .workers
            .keys()
            .cloned()
            .chain(recorded)
            .filter(|k| !state.modules.contains_key(k))
            .collect();
        let now = Instant::now();
        let mut still_absent = HashMap::new();
        for key in others {
            let worker = self.workers.get(&key);
            if state.is_held(Kind::Module, &key) {
                // A held module keeps whatever good version its worker has.
                if worker.is_none() {
                    self.send(key, Intent::Hold);
                }
                continue;
            }
            if worker.is_some_and(|w| *w.intent.borrow() == Intent::Remove) {
                continue;
            }
            let since = self.absent.get(&key).copied().unwrap_or(now);
            if now >= since + self.ctx.removal_grace {
                tracing::info!(module = %key, "no manifest names this module any more: uninstalling");
                self.send(key, Intent::Remove);
            } else {
                // Until then it stays as it is, as if its manifest were held.
                if worker.is_none() {
                    self.send(key.clone(), Intent::Hold);
                }
                still_absent.insert(key, since);
            }
        }
        self.absent = still_absent;
    }

    /// Writes a module's manifest problems into its history when they
    /// appear, change or go away, so `forklet get` shows when an edit broke.
    fn note_problems(&mut self, state: &DesiredState) {
        let keys: Vec<ObjectKey> = self
            .workers
            .keys()
            .chain(self.problems_noted.keys())
            .cloned()
            .collect();
        for key in keys {
            let now: Vec<String> = state
                .problems_of(Kind::Module, &key)
                .map(|p| p.short())
                .collect();
            let now = now.join("; ");
            let before = self.problems_noted.get(&key).cloned().unwrap_or_default();
            if now == before {
                continue;
            }
            let (reason, message) = if now.is_empty() {
                ("ManifestFixed", "the manifest is valid again")
            } else {
                ("ManifestProblem", now.as_str())
            };
            if let Err(err) = self.ctx.store.add_event(&key, reason, message) {
                tracing::warn!(module = %key, error = %err, "cannot record a manifest problem");
            }
            if now.is_empty() {
                self.problems_noted.remove(&key);
            } else {
                self.problems_noted.insert(key, now);
            }
        }
    }

    fn send(&mut self, key: ObjectKey, intent: Intent) {
        if let Some(worker) = self.workers.get(&key) {
            worker.intent.send_if_modified(|current| {
                let modified = *current != intent;
                if modified {
                    *current = intent;
                }
                modified
            });
            return;
        }
        let (intent_tx, intent_rx) = watch::channel(intent);
        let (signals_tx, signals_rx) = mpsc::unbounded_channel();
        self.workers.insert(
            key.clone(),
            WorkerHandle {
                intent: intent_tx,
                signals: signals_tx,
            },
        );
        let worker = Worker::new(self.ctx.clone(), key);
        let exits = self.exits.0.clone();
        self.tasks.spawn(worker.run(intent_rx, signals_rx, exits));
    }

    /// A worker ended because its module is gone. If the module came back
    /// meanwhile, a fresh worker takes over.
    fn on_exit(&mut self, key: ObjectKey) {
        let Some(worker) = self.workers.remove(&key) else {
            return;
        };
        let intent = worker.intent.borrow().clone();
        if matches!(intent, Intent::Run(_)) {
            self.send(key, intent);
        }
    }
}

struct Worker<R> {
    ctx: Arc<Context<R>>,
    key: ObjectKey,
    record: Option<ModuleRecord>,
    /// A runner known to be up, and the settings it was made from.
    runner: Option<(Runner, RunnerSettings)>,
}

impl<R: Runtime> Worker<R> {
    fn new(ctx: Arc<Context<R>>, key: ObjectKey) -> Self {
        Self {
            ctx,
            key,
            record: None,
            runner: None,
        }
    }

    async fn run(
        mut self,
        mut intents: watch::Receiver<Intent>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
        exits: mpsc::UnboundedSender<ObjectKey>,
    ) {
        match self.ctx.store.module(&self.key) {
            Ok(record) => self.record = record,
            Err(err) => {
                tracing::error!(module = %self.key, error = %err, "cannot read module state; leaving it alone");
                return;
            }
        }
        let (ctx, shutdown) = (self.ctx.clone(), self.ctx.shutdown.clone());
        // A failed step waits for this before it is tried again (restored
        // from the record, so a restart keeps backing off).
        let mut retry_at = self
            .record
            .as_ref()
            .and_then(|r| r.next_retry)
            .map(instant_of);
        loop {
            let intent = intents.borrow_and_update().clone();
            // An asleep module's runner is stopped on purpose: nothing to adopt.
            let runner_ok = self.runner.is_some()
                || (self.ctx.stop_runners_while_asleep
                    && self
                        .record
                        .as_ref()
                        .is_some_and(|r| r.asleep && r.phase == Phase::Sleeped));
            let action = plan(&intent, self.record.as_ref(), runner_ok);
            let desired = match &intent {
                Intent::Run(desired) => Some(desired.clone()),
                Intent::Remove | Intent::Hold => None,
            };
            let backing_off = retry_at.is_some_and(|at| Instant::now() < at);
            let progressed = match action {
                Action::Forget => {
                    let _ = exits.send(self.key.clone());
                    return;
                }
                Action::Idle => false,
                _ if backing_off => false,
                action => {
                    let step = async {
                        let _permit = ctx
                            .permits
                            .acquire()
                            .await
                            .expect("the semaphore is never closed");
                        self.step(action, desired.as_deref()).await
                    };
                    // An interrupted step is repeated on the next start: the
                    // phase committed before it says what was under way.
                    let Some(result) = shutdown.run_until_cancelled(step).await else {
                        return;
                    };
                    match result {
                        Ok(()) => {
                            retry_at = None;
                            true
                        }
                        Err(err) => {
                            retry_at = Some(Instant::now() + self.fail(action, &err));
                            false
                        }
                    }
                }
            };
            if progressed {
                continue;
            }
            let retry_due = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = intents.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // New desired state: act on it now, not after a backoff
                    // earned by the old one.
                    retry_at = None;
                    if let Some(record) = self.record.as_mut() {
                        record.attempts = 0;
                        record.next_retry = None;
                    }
                }
                _ = retry_due => retry_at = None,
                Some(signal) = signals.recv() => match signal {
                    Signal::Retry => retry_at = None,
                    Signal::RunnerChanged => self.runner = None,
                    Signal::ForceDelete(reply) => {
                        let result = self.force_delete(&intent).await;
                        let forgotten = result.is_ok();
                        let _ = reply.send(result);
                        if forgotten {
                            let _ = exits.send(self.key.clone());
                            return;
                        }
                    }
                },
            }
        }
    }

    /// Forgets a module whose manifest is gone, without `/uninstall`: for a
    /// module whose uninstall keeps failing and is known to be dead.
    async fn force_delete(&mut self, intent: &Intent) -> Result<(), ForgetError> {
        if let Intent::Run(desired) = intent {
            return Err(ForgetError::StillDefined {
                key: self.key.clone(),
                file: desired.file.clone(),
            });
        }
        let failed = |detail: String| ForgetError::Failed {
            key: self.key.clone(),
            detail,
        };
        self.ctx
            .runtime
            .remove_runners(&self.key)
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.ctx.files.remove(&self.key);
        self.ctx
            .store
            .delete(&self.key)
            .map_err(|e| failed(e.to_string()))?;
        tracing::warn!(module = %self.key, "forgotten without /uninstall (forced)");
        self.record = None;
        self.runner = None;
        Ok(())
    }

    async fn step(
        &mut self,
        action: Action,
        desired: Option<&DesiredModule>,
    ) -> Result<(), StepError> {
        match (action, desired) {
            (Action::Install, Some(desired)) => self.install(desired).await,
            (Action::Sleep, Some(_)) => self.lifecycle(Operation::Sleep, desired).await,
            (Action::Resume, Some(_)) => self.lifecycle(Operation::Resume, desired).await,
            (Action::Uninstall, _) => self.uninstall().await,
            (Action::Adopt, _) => self.adopt(desired).await,
            (action, _) => unreachable!("plan never asks for {action:?} without a desired module"),
        }
    }

    async fn install(&mut self, desired: &DesiredModule) -> Result<(), StepError> {
        let now = Utc::now();
        let record = self.record.get_or_insert_with(|| {
            ModuleRecord::new(
                desired.key.clone(),
                desired.workspace.clone(),
                desired.runner.clone(),
                now,
            )
        });
        record.workspace = desired.workspace.clone();
        record.runner = desired.runner.clone();
        self.transition(Phase::Installing, "Installing", "calling POST /install")?;
        self.ctx.files.write(desired)?;
        let endpoint = self.ready_runner(&desired.runner).await?;
        let metadata = self
            .call(endpoint, Operation::Install, &desired.config)
            .await?;
        let record = self.record.as_mut().expect("created above");
        record.config = desired.config.clone();
        record.metadata = metadata;
        record.installed_hash = Some(desired.install_hash.clone());
        // A fresh install leaves the module awake; `hibernated` is applied next.
        record.asleep = false;
        self.succeeded();
        Ok(self.transition(Phase::Ready, "Installed", "POST /install succeeded")?)
    }

    async fn lifecycle(
        &mut self,
        operation: Operation,
        desired: Option<&DesiredModule>,
    ) -> Result<(), StepError> {
        let (during, reason, asleep) = match operation {
            Operation::Sleep => (Phase::Sleeping, "Sleeping", true),
            _ => (Phase::Resuming, "Resuming", false),
        };
        self.transition(
            during,
            reason,
            &format!("calling POST {}", operation.path()),
        )?;
        let settings = self.settings(desired);
        let endpoint = self.ready_runner(&settings).await?;
        let config = self.record().config.clone();
        let metadata = self.call(endpoint, operation, &config).await?;
        let record = self
            .record
            .as_mut()
            .expect("lifecycle calls follow an install");
        record.metadata = metadata;
        record.asleep = asleep;
        let reason = if asleep { "Slept" } else { "Resumed" };
        self.succeeded();
        self.transition(
            settled(asleep),
            reason,
            &format!("POST {} succeeded", operation.path()),
        )?;
        if asleep && self.ctx.stop_runners_while_asleep {
            // Asleep is settled either way; a runner left running only costs.
            match self.ctx.runtime.stop_runners(&self.key).await {
                Ok(()) => self.runner = None,
                Err(err) => {
                    tracing::warn!(module = %self.key, error = %err, "stopping the runner of an asleep module")
                }
            }
        }
        Ok(())
    }

    async fn uninstall(&mut self) -> Result<(), StepError> {
        self.transition(
            Phase::Uninstalling,
            "Uninstalling",
            "calling POST /uninstall",
        )?;
        let settings = self.record().runner.clone();
        let config = self.record().config.clone();
        let installed = self.record().installed_hash.is_some();
        let result = async {
            let endpoint = self.ready_runner(&settings).await?;
            self.call(endpoint, Operation::Uninstall, &config).await
        }
        .await;
        match result {
            Ok(_) => {}
            // A module that never installed has nothing to clean up that a
            // broken runner could reach; do not keep it for ever.
            Err(err) if !installed => {
                tracing::warn!(module = %self.key, error = %err, "uninstalling a module that never installed");
            }
            Err(err) => return Err(err),
        }
        self.ctx.runtime.remove_runners(&self.key).await?;
        crash_point(&Operation::Uninstall, "after-remove");
        self.ctx.files.remove(&self.key);
        self.ctx.store.delete(&self.key)?;
        tracing::info!(module = %self.key, workspace = %self.record().workspace, "uninstalled");
        self.record = None;
        self.runner = None;
        Ok(())
    }

    /// Finds or recreates the runner and checks its health; no lifecycle call.
    async fn adopt(&mut self, desired: Option<&DesiredModule>) -> Result<(), StepError> {
        let settings = self.settings(desired);
        self.ready_runner(&settings).await?;
        let asleep = self.record().asleep;
        if self.record().phase != settled(asleep) {
            self.succeeded();
            self.transition(settled(asleep), "Recovered", "runner is healthy")?;
        }
        Ok(())
    }

    /// A healthy runner made from `settings`, reusing the known one if it fits.
    async fn ready_runner(&mut self, settings: &RunnerSettings) -> Result<SocketAddr, StepError> {
        if let Some((runner, made_from)) = &self.runner
            && made_from == settings
        {
            return Ok(runner.endpoint);
        }
        self.runner = None;
        let (mut credentials, mut missing_secrets) = (Vec::new(), Vec::new());
        for name in &settings.pull_secrets {
            match self.ctx.store.secret(name)? {
                Some(secret) => credentials.push(secret),
                None => missing_secrets.push(name.clone()),
            }
        }
        let spec = RunnerSpec {
            key: self.key.clone(),
            settings: settings.clone(),
            files_dir: self.ctx.files.dir(&self.key),
            credentials,
            missing_secrets,
            controller_dir: settings.controller.then(|| self.ctx.controller_dir.clone()),
        };
        let (store, key) = (self.ctx.store.clone(), self.key.clone());
        let progress = move |line: &str| {
            if let Err(err) = store.set_message(&key, line) {
                tracing::warn!(module = %key, error = %err, "cannot record progress");
            }
        };
        let runner = self.ctx.runtime.ensure_runner(&spec, &progress).await?;
        if self.record().container_id.as_deref() != Some(runner.container_id.as_str()) {
            self.record_mut().container_id = Some(runner.container_id.clone());
            let message = format!("runner container {}", short_id(&runner.container_id));
            self.save("RunnerStarted", &message)?;
        }
        self.ctx.client.wait_healthy(runner.endpoint).await?;
        tracing::debug!(module = %self.key, container = short_id(&runner.container_id), "runner healthy");
        let endpoint = runner.endpoint;
        self.runner = Some((runner, settings.clone()));
        Ok(endpoint)
    }

    /// One lifecycle call; returns the metadata to keep. The body is the
    /// stored metadata with the current config laid over it.
    async fn call(
        &mut self,
        endpoint: SocketAddr,
        operation: Operation,
        config: &Map<String, Value>,
    ) -> Result<Map<String, Value>, StepError> {
        let mut body = self.record().metadata.clone();
        body.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
        crash_point(&operation, "before-call");
        let answer = self.ctx.client.call(endpoint, operation, &body).await;
        crash_point(&operation, "after-call");
        match answer {
            Ok(Some(metadata)) => Ok(metadata),
            Ok(None) => Ok(self.record().metadata.clone()),
            Err(err) => {
                if err.runner_suspect() {
                    self.runner = None;
                }
                Err(err.into())
            }
        }
    }

    fn settings(&self, desired: Option<&DesiredModule>) -> RunnerSettings {
        desired.map_or_else(|| self.record().runner.clone(), |d| d.runner.clone())
    }

    fn record(&self) -> &ModuleRecord {
        self.record
            .as_ref()
            .expect("plan only acts on recorded modules here")
    }

    fn record_mut(&mut self) -> &mut ModuleRecord {
        self.record
            .as_mut()
            .expect("plan only acts on recorded modules here")
    }

    /// A step succeeded: the failures before it no longer count.
    fn succeeded(&mut self) {
        let record = self.record_mut();
        record.attempts = 0;
        record.next_retry = None;
    }

    fn transition(&mut self, phase: Phase, reason: &str, message: &str) -> Result<(), StoreError> {
        let record = self.record_mut();
        record.phase = phase;
        record.message = String::new();
        tracing::info!(module = %self.key, %phase, "{message}");
        self.save(reason, message)
    }

    fn save(&mut self, reason: &str, message: &str) -> Result<(), StoreError> {
        let record = self.record_mut();
        record.last_activity = Utc::now();
        let record = self.record();
        self.ctx.store.save(record, reason, message)
    }

    /// Records the failure and returns how long to wait before trying again.
    fn fail(&mut self, action: Action, err: &StepError) -> Duration {
        let message = format!("{} failed: {err}", format!("{action:?}").to_lowercase());
        let Some(record) = self.record.as_mut() else {
            let delay = self.ctx.backoff.next(1);
            tracing::warn!(module = %self.key, "{message}; retrying in {delay:?}");
            return delay;
        };
        record.attempts += 1;
        let delay = self.ctx.backoff.next(record.attempts);
        record.phase = Phase::Failed;
        record.message = message.clone();
        record.next_retry = chrono::Duration::from_std(delay)
            .ok()
            .map(|d| Utc::now() + d);
        tracing::warn!(module = %self.key, attempt = record.attempts, "{message}; retrying in {delay:?}");
        if let Err(store_err) = self.save("Failed", &message) {
            tracing::error!(module = %self.key, error = %store_err, "cannot record the failure");
        }
        delay
    }
}

/// The monotonic instant of a wall-clock time (now, if it has passed).
fn instant_of(at: chrono::DateTime<Utc>) -> Instant {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    Instant::now() + wait
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}
