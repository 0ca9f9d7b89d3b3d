//! The lifecycle steps. Each commits the phase it enters, with the call it
//! is about to make, before making it: a crash or a dropped step leaves a
//! record that says what was under way, and the plan repeats or reverses
//! it from there.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use forklet_state::desired::DesiredModule;
use forklet_state::event::EventReason;
use forklet_state::operation::Operation;
use forklet_state::store::{ModuleRecord, Phase, RunnerSettings, StoreError};
use serde_json::{Map, Value};

use super::worker::{RunnerState, Worker};
use crate::fault::crash_point;
use crate::plan::{Action, settled};
use crate::protocol::{CallError, ModuleApi};
use crate::runner_files::{Durable, FilesError, KubeconfigFile};
use crate::runtime::{RunnerSpec, Runtime, RuntimeError, short_id};

#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ControllerSocket(#[from] crate::control_socket::SocketError),
    #[error("forklet has no record of this module")]
    NotRecorded,
    #[error("{0}")]
    Unreachable(String),
    #[error("forkletd is stopping")]
    Stopping,
}

/// How long a runner may take to answer `GET /health` before the engine is
/// asked whether it still runs.
const STOPPED_LOOK_AFTER: Duration = Duration::from_millis(500);

impl<R: Runtime, M: ModuleApi> Worker<R, M> {
    pub(super) async fn step(&mut self, action: Action) -> Result<(), StepError> {
        match action {
            Action::Install(desired) => self.install(&desired).await,
            Action::Sleep(desired) => self.sleep_or_resume(Operation::Sleep, &desired).await,
            Action::Resume(desired) => self.sleep_or_resume(Operation::Resume, &desired).await,
            Action::Uninstall => self.uninstall().await,
            Action::Adopt(settings) => self.adopt(&settings).await,
            Action::Idle | Action::Forget => Ok(()),
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
        // Committed before the runner is made, but without the call: a
        // module whose runner never answered has received nothing, and can
        // be forgotten without one. A call cut short before stays recorded.
        record.phase = Phase::Installing;
        if record.attempts == 0 {
            record.message = String::new();
        }
        self.save(EventReason::Preparing, "starting the runner")
            .await?;
        // A module is not started towards a cluster that cannot be found:
        // its message says what was found and what to do.
        if desired.kubeconfig.is_some()
            && let Some(reason) = self.unreachable(desired)
        {
            // Looked for again before the retry: a server that started
            // since (a host k3s) announces itself by no engine event.
            if let Some(look_again) = &self.ctx.look_again {
                let _ = look_again.send(());
            }
            return Err(StepError::Unreachable(reason));
        }
        self.write_files(desired, Durable::Later).await?;
        self.written_kubeconfig = desired.kubeconfig_stamp;
        // On disk before the install is recorded (a runner adopted after a
        // power cut reads them as they are), not before the runner starts.
        let durable = self.sync_files();
        let endpoint = self.ready_runner(&desired.runner).await?;
        match durable.await {
            Ok(synced) => synced?,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
        self.begin(
            Operation::Install,
            Phase::Installing,
            EventReason::Installing,
        )
        .await?;
        let metadata = self
            .call(endpoint, Operation::Install, &desired.config)
            .await?;
        let record = self.recorded()?;
        record.config = desired.config.clone();
        record.metadata = metadata;
        record.installed_hash = Some(desired.install_hash.clone());
        // A fresh install leaves the module awake; `hibernated` is applied next.
        record.asleep = false;
        self.settle(EventReason::Installed, "POST /install succeeded")
            .await
    }

    async fn sleep_or_resume(
        &mut self,
        operation: Operation,
        desired: &DesiredModule,
    ) -> Result<(), StepError> {
        let (during, reason, asleep) = match operation {
            Operation::Sleep => (Phase::Sleeping, EventReason::Sleeping, true),
            _ => (Phase::Resuming, EventReason::Resuming, false),
        };
        self.begin(operation, during, reason).await?;
        let endpoint = self.ready_runner(&desired.runner).await?;
        let config = self.recorded()?.config.clone();
        let metadata = self.call(endpoint, operation, &config).await?;
        if asleep && self.ctx.stop_runners_while_asleep {
            // `sleeped` means stopped: the runner goes before the phase
            // says so. A runner that cannot be stopped fails the step, and
            // the next try sleeps again (modules are idempotent).
            self.ctx.runtime.stop_runners(&self.key).await?;
            self.runner = RunnerState::StoppedAsleep;
        }
        let record = self.recorded()?;
        record.metadata = metadata;
        record.asleep = asleep;
        let reason = if asleep {
            EventReason::Slept
        } else {
            EventReason::Resumed
        };
        self.settle(reason, &format!("POST {} succeeded", operation.path()))
            .await
    }

    async fn uninstall(&mut self) -> Result<(), StepError> {
        let record = self.recorded()?;
        let (settings, config) = (record.runner.clone(), record.config.clone());
        let installed = record.installed_hash.is_some();
        // Never installed and no call ever begun: the module has received
        // nothing it could have acted on, so there is nothing to clean up
        // and no runner to wait for.
        let reached = installed || record.operation.is_some();
        let runner = match reached {
            true => {
                self.begin(
                    Operation::Uninstall,
                    Phase::Uninstalling,
                    EventReason::Uninstalling,
                )
                .await?;
                Some(self.ready_runner(&settings).await)
            }
            false => None,
        };
        match runner {
            None => {
                tracing::info!(module = %self.key, "removing a module that never received a call");
            }
            // Any module that a runner can serve is asked to clean up: an
            // install that failed or was cut short may have made things.
            Some(Ok(endpoint)) => {
                self.call(endpoint, Operation::Uninstall, &config).await?;
                // Known to be done: should the manifest come back before the
                // module is forgotten, it starts afresh, as a new one would.
                let record = self.recorded()?;
                record.operation = None;
                record.installed_hash = None;
                record.metadata = Map::new();
                self.save(EventReason::Uninstalled, "POST /uninstall succeeded")
                    .await?;
            }
            // A module that never installed and cannot even get a runner
            // (its image is gone, say) cannot have made anything to clean
            // up: do not keep it for ever.
            Some(Err(err)) if !installed => {
                tracing::warn!(module = %self.key, error = %err, "removing a module that never installed and has no runner");
            }
            Some(Err(err)) => return Err(err),
        }
        self.ctx.runtime.remove_runners(&self.key).await?;
        crash_point(&Operation::Uninstall, "after-remove");
        self.ctx.files.remove(&self.key);
        let key = self.key.clone();
        self.ctx.writes.run(move |store| store.delete(&key)).await?;
        tracing::info!(module = %self.key, "uninstalled");
        self.record = None;
        self.runner = RunnerState::Unknown;
        Ok(())
    }

    /// Finds or recreates the runner and checks its health (or, for an
    /// asleep module whose runner is kept stopped, makes sure it is
    /// stopped); no lifecycle call, so only for a module whose last call is
    /// known to have worked.
    async fn adopt(&mut self, settings: &RunnerSettings) -> Result<(), StepError> {
        if self.recorded()?.asleep && self.ctx.stop_runners_while_asleep {
            self.ctx.runtime.stop_runners(&self.key).await?;
            self.runner = RunnerState::StoppedAsleep;
        } else {
            self.ready_runner(settings).await?;
        }
        let record = self.recorded()?;
        if record.phase != settled(record.asleep) {
            self.settle(EventReason::Recovered, "runner is healthy")
                .await?;
        }
        Ok(())
    }

    /// The files under `/forkspacer`, written off the async runtime (the
    /// workspace kubeconfig is read from wherever the manifest points).
    pub(super) async fn write_files(
        &self,
        desired: &DesiredModule,
        durable: Durable,
    ) -> Result<(), StepError> {
        let (files, desired) = (self.ctx.files.clone(), desired.clone());
        let reach = self.ctx.clusters.borrow().get(&desired.workspace).cloned();
        let write = move || {
            let kubeconfig = match (&desired.kubeconfig, reach.as_deref()) {
                (None, _) => KubeconfigFile::Remove,
                (Some(_), Some(Ok(access))) => KubeconfigFile::Write(&access.kubeconfig),
                (Some(_), _) => KubeconfigFile::Keep,
            };
            files.write(&desired, kubeconfig, durable)
        };
        match tokio::task::spawn_blocking(write).await {
            Ok(written) => Ok(written.map(drop)?),
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        }
    }

    /// Makes the files written durable, off the async runtime; awaited
    /// where they must be.
    pub(super) fn sync_files(&self) -> tokio::task::JoinHandle<Result<(), FilesError>> {
        let (files, key) = (self.ctx.files.clone(), self.key.clone());
        tokio::task::spawn_blocking(move || files.sync(&key))
    }

    /// Why the module's workspace cluster cannot be reached now, if it cannot.
    pub(super) fn unreachable(&self, desired: &DesiredModule) -> Option<String> {
        match self
            .ctx
            .clusters
            .borrow()
            .get(&desired.workspace)
            .map(|r| r.as_ref())
        {
            Some(Ok(_)) => None,
            Some(Err(reason)) => Some(reason.clone()),
            None => Some(format!(
                "workspace {}: its cluster has not been looked for yet",
                desired.workspace
            )),
        }
    }

    /// A healthy runner made from `settings`, reusing the known one if it fits.
    async fn ready_runner(&mut self, settings: &RunnerSettings) -> Result<SocketAddr, StepError> {
        if let RunnerState::Up {
            runner,
            settings: made_from,
        } = &self.runner
            && made_from == settings
        {
            return Ok(runner.endpoint);
        }
        self.runner = RunnerState::Unknown;
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
            controller_dir: match settings.controller {
                true => {
                    let workspace = self.recorded()?.workspace.clone();
                    Some((self.ctx.controller_dirs)(&workspace)?)
                }
                false => None,
            },
            trial: false,
        };
        let (writes, key) = (self.ctx.writes.clone(), self.key.clone());
        let progress = move |line: &str| {
            let (key, line) = (key.clone(), line.to_owned());
            writes.submit(move |store| {
                if let Err(err) = store.set_message(&key, &line) {
                    tracing::warn!(module = %key, error = %err, "cannot record progress");
                }
            });
        };
        let runner = self.ctx.runtime.ensure_runner(&spec, &progress).await?;
        let record = self.recorded()?;
        // What the runner is made from now, so that a later look (a restart,
        // a held manifest) wants this runner and not the one before.
        let remade = record.runner != *settings;
        record.runner = settings.clone();
        if remade || record.container_id.as_deref() != Some(runner.container_id.as_str()) {
            record.container_id = Some(runner.container_id.clone());
            let message = format!("runner container {}", short_id(&runner.container_id));
            self.save(EventReason::RunnerStarted, &message).await?;
        }
        // A runner that stops meanwhile (a module that exits at start, a
        // runner adopted while it was being stopped) is news at once, not
        // after the health deadline. Not asked while a runner answers at once.
        let stopped = async {
            tokio::time::sleep(STOPPED_LOOK_AFTER).await;
            self.ctx.runtime.stopped(&runner.container_id).await
        };
        tokio::select! {
            healthy = self.ctx.client.wait_healthy(runner.endpoint) => healthy?,
            code = stopped => {
                self.runner = RunnerState::Unknown;
                let id = short_id(&runner.container_id).to_owned();
                return Err(RuntimeError::StoppedBeforeHealthy { id, code }.into());
            }
        }
        tracing::debug!(module = %self.key, container = short_id(&runner.container_id), "runner healthy");
        let endpoint = runner.endpoint;
        self.runner = RunnerState::Up {
            runner,
            settings: settings.clone(),
        };
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
        let stored = self.recorded()?.metadata.clone();
        let body = crate::protocol::call_body(&stored, config);
        crash_point(&operation, "before-call");
        let answer = self.ctx.client.call(endpoint, operation, &body).await;
        tracing::debug!(module = %self.key, "POST {} answered", operation.path());
        crash_point(&operation, "after-call");
        match answer {
            Ok(Some(metadata)) => Ok(metadata),
            // An empty body keeps what was stored.
            Ok(None) => Ok(stored),
            Err(err) => {
                if err.runner_suspect() {
                    self.runner = RunnerState::Unknown;
                }
                Err(err.into())
            }
        }
    }

    pub(super) fn recorded(&mut self) -> Result<&mut ModuleRecord, StepError> {
        self.record.as_mut().ok_or(StepError::NotRecorded)
    }

    /// Enters the phase of a lifecycle call, committed with the call it is
    /// about to make.
    async fn begin(
        &mut self,
        operation: Operation,
        phase: Phase,
        reason: EventReason,
    ) -> Result<(), StepError> {
        let record = self.recorded()?;
        record.phase = phase;
        record.operation = Some(operation);
        // A retry keeps the last failure in view until it succeeds.
        if record.attempts == 0 {
            record.message = String::new();
        }
        let message = format!("calling POST {}", operation.path());
        tracing::info!(module = %self.key, %phase, "{message}");
        Ok(self.save(reason, &message).await?)
    }

    /// The call under way worked: the module rests in its settled phase,
    /// and the failures before no longer count.
    async fn settle(&mut self, reason: EventReason, message: &str) -> Result<(), StepError> {
        let record = self.recorded()?;
        record.operation = None;
        record.attempts = 0;
        record.next_retry = None;
        record.phase = settled(record.asleep);
        record.message = String::new();
        let phase = record.phase;
        self.save(reason, message).await?;
        tracing::info!(module = %self.key, %phase, "{message}");
        Ok(())
    }

    /// Commits the record with an event, on the store thread.
    pub(super) async fn save(
        &mut self,
        reason: EventReason,
        message: &str,
    ) -> Result<(), StoreError> {
        let Some(record) = self.record.as_mut() else {
            return Ok(());
        };
        record.last_activity = Utc::now();
        let record = record.clone();
        let phase = record.phase;
        let message = message.to_owned();
        self.ctx
            .writes
            .run(move |store| store.save(&record, reason, &message))
            .await?;
        if self.saved_phase.replace(phase) != Some(phase) {
            crate::metrics::METRICS.entered(phase);
        }
        Ok(())
    }
}
