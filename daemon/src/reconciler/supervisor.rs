//! Dispatch: one worker per module, fed with its intent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use forklet_state::ObjectKey;
use forklet_state::desired::DesiredState;
use forklet_state::event::EventReason;
use forklet_state::hibernation::Scope;
use forklet_state::manifest::Kind;
use forklet_state::store::{Phase, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::mailbox::Signal;
use super::problems::ProblemHistory;
use super::worker::{Worker, WorkerHandle, channels};
use super::{Command, Context, ForgetError};
use crate::hibernation::Hibernation;
use crate::plan::Intent;
use crate::protocol::ModuleApi;
use crate::runtime::Runtime;

pub struct Supervisor<R, M> {
    ctx: Arc<Context<R, M>>,
    workers: HashMap<ObjectKey, WorkerHandle>,
    problems: ProblemHistory,
    /// Modules a manifest names now (resolved or held), and the file.
    defined: HashMap<ObjectKey, PathBuf>,
    /// Modules no manifest names, since when; removed once the grace is over.
    absent: HashMap<ObjectKey, Instant>,
    /// Overrides of objects no manifest names, since when; deleted with
    /// their object, once the same grace is over.
    orphan_overrides: HashMap<(Scope, ObjectKey), Instant>,
    tasks: JoinSet<()>,
    /// Which module each worker task drives.
    task_keys: HashMap<Id, ObjectKey>,
    /// Panics of each module's workers in a row: the next one starts later.
    crashes: HashMap<ObjectKey, u32>,
}

impl<R: Runtime, M: ModuleApi> Supervisor<R, M> {
    pub fn new(ctx: Arc<Context<R, M>>) -> Self {
        Self {
            ctx,
            workers: HashMap::new(),
            problems: ProblemHistory::default(),
            defined: HashMap::new(),
            absent: HashMap::new(),
            orphan_overrides: HashMap::new(),
            tasks: JoinSet::new(),
            task_keys: HashMap::new(),
            crashes: HashMap::new(),
        }
    }

    /// Runs until shutdown, then waits for every worker to stop.
    /// Tells the service manager the reconciler is alive, and how modules stand.
    fn beat(&self) {
        let service = &self.ctx.service;
        service.watchdog();
        match self.ctx.store.phase_counts() {
            Ok(counts) => service.status(&crate::service::summary(&counts)),
            Err(err) => tracing::warn!(error = %err, "cannot count modules for the status line"),
        }
    }

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
        let asleep = hibernation.borrow_and_update().clone();
        self.apply(&state, &asleep, recorded);
        // The control socket was bound before the reconciler started, and
        // the first scan is now applied.
        self.ctx.service.ready();
        // Beaten here, in the loop that does the work: if it wedges, the
        // watchdog stops hearing from it.
        let mut beat = self.ctx.service.beat_every().map(tokio::time::interval);
        loop {
            let beat_due = async {
                match beat.as_mut() {
                    Some(beat) => beat.tick().await,
                    None => std::future::pending().await,
                }
            };
            let grace_over = self
                .absent
                .values()
                .chain(self.orphan_overrides.values())
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
                changed = desired.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let state = desired.borrow_and_update().clone();
                    let asleep = hibernation.borrow().clone();
                    self.apply(&state, &asleep, Vec::new());
                }
                changed = hibernation.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let state = desired.borrow().clone();
                    let asleep = hibernation.borrow_and_update().clone();
                    self.apply(&state, &asleep, Vec::new());
                }
                _ = removal_due => {
                    let state = desired.borrow().clone();
                    let asleep = hibernation.borrow().clone();
                    self.apply(&state, &asleep, Vec::new());
                }
                Some(joined) = self.tasks.join_next_with_id() => self.on_exit(joined),
                Some(command) = commands.recv() => self.command(command),
                _ = beat_due => self.beat(),
            }
        }
        while self.tasks.join_next().await.is_some() {}
        Ok(())
    }

    fn command(&mut self, command: Command) {
        let signal = |workers: &HashMap<ObjectKey, WorkerHandle>, key: &ObjectKey, signal| {
            workers.get(key).is_some_and(|w| w.post.signal(signal))
        };
        match command {
            Command::Retry(key, reply) => {
                let _ = reply.send(signal(&self.workers, &key, Signal::Retry));
            }
            Command::RunnerChanged(key, id) => {
                signal(&self.workers, &key, Signal::RunnerChanged(Some(id)));
            }
            Command::AllRunnersChanged => {
                for worker in self.workers.values() {
                    worker.post.signal(Signal::RunnerChanged(None));
                }
            }
            // Only what no manifest names may be forgotten: decided here,
            // from the manifests as they are now, not by a busy worker.
            Command::ForceDelete(key, reply) => match self.workers.get(&key) {
                _ if self.defined.contains_key(&key) => {
                    let file = self.defined[&key].clone();
                    let _ = reply.send(Err(ForgetError::StillDefined { key, file }));
                }
                Some(worker) => {
                    if let Err(reply) = worker.post.force(reply) {
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
        self.defined = state
            .modules
            .iter()
            .map(|(key, module)| (key.clone(), module.file.clone()))
            .collect();
        for problem in &state.problems {
            if let (Some(Kind::Module), Some(key)) = (problem.kind, &problem.object) {
                self.defined
                    .entry(key.clone())
                    .or_insert_with(|| problem.file.clone());
            }
        }
        self.problems
            .note(&self.ctx.writes, state, self.workers.keys());
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
        self.prune_overrides(state, now);
    }

    /// A manual sleep or resume goes with its object: a module or workspace
    /// made again later under the same name starts without it.
    fn prune_overrides(&mut self, state: &DesiredState, now: Instant) {
        let overrides = match self.ctx.store.override_keys() {
            Ok(overrides) => overrides,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the overrides");
                return;
            }
        };
        let mut still_orphaned = HashMap::new();
        for (scope, key) in overrides {
            let named = match scope {
                Scope::Module => {
                    state.modules.contains_key(&key) || state.is_held(Kind::Module, &key)
                }
                Scope::Workspace => {
                    state.workspaces.contains_key(&key) || state.is_held(Kind::Workspace, &key)
                }
            };
            if named {
                continue;
            }
            let entry = (scope, key);
            let since = self.orphan_overrides.get(&entry).copied().unwrap_or(now);
            if now < since + self.ctx.removal_grace {
                still_orphaned.insert(entry, since);
                continue;
            }
            let (scope, key) = entry;
            self.ctx
                .writes
                .submit(move |store| match store.delete_override(scope, &key) {
                    Ok(_) => tracing::info!(scope = scope.as_str(), object = %key, "override removed with its object"),
                    Err(err) => tracing::warn!(error = %err, object = %key, "cannot remove an override"),
                });
        }
        self.orphan_overrides = still_orphaned;
        let now = Utc::now();
        self.ctx.writes.submit(move |store| {
            if let Err(err) = store.delete_expired_overrides(now) {
                tracing::warn!(error = %err, "cannot drop expired overrides");
            }
        });
    }

    fn send(&mut self, key: ObjectKey, intent: Intent) {
        self.send_after(key, intent, Duration::ZERO);
    }

    /// As [`Self::send`]; a new worker starts after `delay`.
    fn send_after(&mut self, key: ObjectKey, intent: Intent, delay: Duration) {
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
        let (handle, inbox) = channels(intent);
        self.workers.insert(key.clone(), handle);
        let worker = Worker::new(self.ctx.clone(), key.clone());
        let task = self.tasks.spawn(worker.run(inbox, delay));
        self.task_keys.insert(task.id(), key);
    }

    /// A worker ended: its module is gone (if it came back meanwhile, a
    /// fresh worker takes over), or it panicked (its module is marked
    /// failed with the reason, and a fresh worker retries after a backoff).
    fn on_exit(&mut self, joined: Result<(Id, ()), JoinError>) {
        let (id, panicked) = match joined {
            Ok((id, ())) => (id, None),
            Err(err) => (err.id(), Some(panic_text(err))),
        };
        let Some(key) = self.task_keys.remove(&id) else {
            return;
        };
        let Some(worker) = self.workers.remove(&key) else {
            return;
        };
        let intent = worker.intent.borrow().clone();
        if let Some(why) = panicked {
            let crashes = self.crashes.entry(key.clone()).or_default();
            *crashes = crashes.saturating_add(1);
            let delay = self.ctx.backoff.next(*crashes);
            tracing::error!(module = %key, "the module's worker failed: {why}; starting it again in {delay:?}");
            self.record_crash(&key, &why);
            self.send_after(key, intent, delay);
            return;
        }
        self.crashes.remove(&key);
        if matches!(intent, Intent::Run(_)) {
            self.send(key, intent);
        }
    }

    /// Shows a module whose worker panicked as failed, with the reason.
    fn record_crash(&self, key: &ObjectKey, why: &str) {
        let (key, message) = (key.clone(), format!("internal error: {why}"));
        self.ctx.writes.submit(move |store| {
            let Ok(Some(mut record)) = store.module(&key) else {
                return;
            };
            record.phase = Phase::Failed;
            record.message = message;
            record.last_activity = Utc::now();
            if let Err(err) = store.save(&record, EventReason::WorkerFailed, &record.message) {
                tracing::error!(module = %key, error = %err, "cannot record the failure");
            }
        });
    }
}

fn panic_text(err: JoinError) -> String {
    if !err.is_panic() {
        return "cancelled".to_owned();
    }
    let payload = err.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map_or_else(|| "panicked".to_owned(), |s| format!("panicked: {s}"))
}
