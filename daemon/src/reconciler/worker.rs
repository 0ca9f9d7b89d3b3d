//! One module's loop: plan, act, back off on failure, wait for news.
//!
//! The worker holds the only copy of its module's record in flight, so
//! there is never more than one operation per module. Its intent comes
//! from a `watch` channel: a burst of edits coalesces into the latest one.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use forklet_state::ObjectKey;
use forklet_state::desired::DesiredModule;
use forklet_state::event::EventReason;
use forklet_state::store::{ModuleRecord, Phase, RunnerSettings};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::mailbox::{Mailbox, Post, Signal, mailbox};
use super::steps::StepError;
use super::{Context, ForgetError};
use crate::plan::{Action, Intent, RunnerSeen, plan};
use crate::protocol::ModuleApi;
use crate::runner_files::Durable;
use crate::runtime::{Runner, Runtime};

pub(super) type ForceReply = oneshot::Sender<Result<(), ForgetError>>;

/// The supervisor's end of a worker.
pub(super) struct WorkerHandle {
    pub intent: watch::Sender<Intent>,
    /// Signals, and `forklet delete --force` (which abandons whatever step
    /// is under way).
    pub post: Post,
}

/// The worker's end.
pub(super) struct Inbox {
    pub intents: watch::Receiver<Intent>,
    pub mail: Mailbox,
}

pub(super) fn channels(intent: Intent) -> (WorkerHandle, Inbox) {
    let (intent_tx, intents) = watch::channel(intent);
    let (post, mail) = mailbox();
    let handle = WorkerHandle {
        intent: intent_tx,
        post,
    };
    (handle, Inbox { intents, mail })
}

/// What the worker knows of its runner.
#[derive(Debug)]
pub(super) enum RunnerState {
    /// Not looked at yet, or changed since.
    Unknown,
    /// Made from `settings`, and it answered `GET /health`.
    Up {
        runner: Runner,
        settings: RunnerSettings,
    },
    /// Stopped on purpose while the module sleeps.
    StoppedAsleep,
}

impl RunnerState {
    fn seen(&self) -> RunnerSeen {
        match self {
            RunnerState::Unknown => RunnerSeen::Unknown,
            RunnerState::Up { .. } => RunnerSeen::Healthy,
            RunnerState::StoppedAsleep => RunnerSeen::StoppedAsleep,
        }
    }

    /// As [`Self::seen`], but a runner made from other settings than the
    /// intent wants (its cluster moved to another network) is one to look
    /// at again: the adopt that follows replaces it, without `/install`.
    fn seen_for(&self, intent: &Intent) -> RunnerSeen {
        match (self, intent) {
            (RunnerState::Up { settings, .. }, Intent::Run(desired))
                if *settings != desired.runner =>
            {
                RunnerSeen::Unknown
            }
            _ => self.seen(),
        }
    }

    /// The engine reported a change of container `id` (`None`: of any).
    /// Only the runner in use matters: events about containers forklet
    /// replaced or stopped itself are no news.
    fn changed(&mut self, id: Option<&str>) {
        if let RunnerState::Up { runner, .. } = self
            && id.is_none_or(|id| id == runner.container_id)
        {
            *self = RunnerState::Unknown;
        }
    }
}

/// How one action ended.
enum Outcome {
    Done,
    /// Failed; try again after this long.
    Failed(Duration),
    /// The module was removed while the step ran: the step was dropped.
    Abandoned,
    /// `forklet delete --force` came while the step ran: it was dropped.
    Forced(ForceReply),
    Stopped,
}

pub(super) struct Worker<R, M> {
    pub ctx: Arc<Context<R, M>>,
    pub key: ObjectKey,
    pub record: Option<ModuleRecord>,
    pub runner: RunnerState,
    /// The fingerprint of the kubeconfig in the runner's files, as this
    /// worker wrote it (`None`: not written since it started).
    pub written_kubeconfig: Option<u64>,
    /// The phase last committed, to count the module entering another.
    pub saved_phase: Option<Phase>,
}

impl<R: Runtime, M: ModuleApi> Worker<R, M> {
    pub fn new(ctx: Arc<Context<R, M>>, key: ObjectKey) -> Self {
        Self {
            ctx,
            key,
            record: None,
            runner: RunnerState::Unknown,
            written_kubeconfig: None,
            saved_phase: None,
        }
    }

    /// Runs until the module is gone or shutdown; the supervisor learns
    /// which from the intent it last sent.
    pub async fn run(mut self, mut inbox: Inbox, delay: Duration) {
        if !delay.is_zero() {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if !self.load().await {
            return;
        }
        self.saved_phase = self.record.as_ref().map(|r| r.phase);
        let shutdown = self.ctx.shutdown.clone();
        // A failed step waits for this before it is tried again (restored
        // from the record, so a restart keeps backing off).
        let mut retry_at = self
            .record
            .as_ref()
            .and_then(|r| r.next_retry)
            .map(instant_of);
        loop {
            let intent = inbox.intents.borrow_and_update().clone();
            if let Intent::Run(desired) = &intent {
                Box::pin(self.sync_kubeconfig(desired)).await;
            }
            let action = plan(&intent, self.record.as_ref(), self.runner.seen_for(&intent));
            let backing_off = retry_at.is_some_and(|at| Instant::now() < at);
            match action {
                Action::Forget => return,
                Action::Idle => {}
                _ if backing_off => {}
                // Boxed: a step's future is large, and a thousand workers
                // spend most of their lives between steps.
                action => match Box::pin(self.act(action, &intent, &mut inbox)).await {
                    Outcome::Done => {
                        retry_at = None;
                        continue;
                    }
                    Outcome::Failed(delay) => retry_at = Some(Instant::now() + delay),
                    // After a dropped step, what was committed is the
                    // truth, and the runner must be looked at again.
                    Outcome::Abandoned => {
                        self.load().await;
                        continue;
                    }
                    Outcome::Forced(reply) => {
                        self.load().await;
                        if Box::pin(self.forget(reply)).await {
                            return;
                        }
                        continue;
                    }
                    Outcome::Stopped => return,
                },
            }
            let retry_due = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = inbox.intents.changed() => {
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
                signal = inbox.mail.signal() => match signal {
                    Signal::Retry => retry_at = None,
                    Signal::RunnerChanged(id) => self.runner.changed(id.as_deref()),
                },
                reply = inbox.mail.forced() => {
                    if Box::pin(self.forget(reply)).await {
                        return;
                    }
                }
            }
        }
    }

    /// One action under a concurrency permit, raced against shutdown, a
    /// forced deletion, and a change of mind: removal for anything but an
    /// uninstall, any new intent for an uninstall (the module wanted again,
    /// or elsewhere). A step that loses the race is dropped where it
    /// stands: what it committed says what was under way, and the next plan
    /// starts from there.
    async fn act(&mut self, action: Action, intent: &Intent, inbox: &mut Inbox) -> Outcome {
        let ctx = self.ctx.clone();
        let mut watching = inbox.intents.clone();
        let uninstalling = action == Action::Uninstall;
        let started = intent.clone();
        let removed = async move {
            let closed = watching
                .wait_for(|now| {
                    if uninstalling {
                        *now != started
                    } else {
                        *now == Intent::Remove
                    }
                })
                .await
                .is_err();
            if closed {
                std::future::pending::<()>().await;
            }
        };
        let name = action.name();
        let step = async {
            let mut slot = crate::metrics::METRICS.queued();
            let _permit = ctx
                .permits
                .acquire()
                .await
                .map_err(|_| StepError::Stopping)?;
            slot.started();
            self.step(action).await
        };
        let result = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Outcome::Stopped,
            reply = inbox.mail.forced() => return Outcome::Forced(reply),
            _ = removed => return Outcome::Abandoned,
            result = step => result,
        };
        match result {
            Ok(()) => Outcome::Done,
            Err(err) => Outcome::Failed(self.error_policy(name, &err).await),
        }
    }

    /// Records a failed step and returns how long to wait before the next
    /// try. The record keeps the operation that failed: its effect is
    /// unknown, and the plan treats it so.
    async fn error_policy(&mut self, action: &str, err: &StepError) -> Duration {
        let message = format!("{action} failed: {err}");
        let Some(record) = self.record.as_mut() else {
            let delay = self.ctx.backoff.next(1);
            tracing::warn!(module = %self.key, "{message}; retrying in {delay:?}");
            return delay;
        };
        record.attempts = record.attempts.saturating_add(1);
        let delay = self.ctx.backoff.next(record.attempts);
        record.phase = Phase::Failed;
        record.message = message.clone();
        record.next_retry = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d));
        tracing::warn!(module = %self.key, attempt = record.attempts, "{message}; retrying in {delay:?}");
        if let Err(store_err) = self.save(EventReason::Failed, &message).await {
            tracing::error!(module = %self.key, error = %store_err, "cannot record the failure");
        }
        delay
    }

    /// A kubeconfig rotated (new credentials, a recreated cluster) is
    /// written into the files of an installed module's runner, which reads
    /// it from its mount: no `/install`, no new runner.
    async fn sync_kubeconfig(&mut self, desired: &DesiredModule) {
        let installed = self.record.as_ref().is_some_and(|r| {
            r.operation.is_none()
                && r.installed_hash.as_deref() == Some(desired.install_hash.as_str())
        });
        if !installed
            || desired.kubeconfig.is_none()
            || self.written_kubeconfig == desired.kubeconfig_stamp
        {
            return;
        }
        // A running module's files: old or new after a power cut, never empty.
        match self.write_files(desired, Durable::Now).await {
            Ok(()) if self.unreachable(desired).is_none() => {
                tracing::info!(module = %self.key, "kubeconfig written for the runner")
            }
            Ok(()) => {}
            Err(err) => {
                tracing::warn!(module = %self.key, error = %err, "cannot write the runner's kubeconfig")
            }
        }
        // Tried once per version: a broken kubeconfig is reported, not retried in a loop.
        self.written_kubeconfig = desired.kubeconfig_stamp;
    }

    /// Reads the record; a store that cannot be read is retried with
    /// backoff. `false` on shutdown.
    async fn load(&mut self) -> bool {
        let mut failures = 0;
        loop {
            // Through the store thread: it sees every save asked for before,
            // also by a step that was dropped.
            let key = self.key.clone();
            match self.ctx.writes.run(move |store| store.module(&key)).await {
                Ok(record) => {
                    // Whatever the record says, the runner is looked at.
                    self.runner = RunnerState::Unknown;
                    self.record = record;
                    return true;
                }
                Err(err) => {
                    failures += 1;
                    let delay = self.ctx.backoff.next(failures);
                    tracing::error!(module = %self.key, error = %err, "cannot read module state; trying again in {delay:?}");
                    tokio::select! {
                        _ = self.ctx.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Answers a forced deletion (the supervisor checked that no manifest
    /// names the module); `true` when the module is forgotten.
    async fn forget(&mut self, reply: ForceReply) -> bool {
        let result = self.force_delete().await;
        let forgotten = result.is_ok();
        let _ = reply.send(result);
        forgotten
    }

    /// Forgets a module whose manifest is gone, without `/uninstall`: for a
    /// module whose uninstall keeps failing and is known to be dead.
    async fn force_delete(&mut self) -> Result<(), ForgetError> {
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
        let key = self.key.clone();
        self.ctx
            .writes
            .run(move |store| store.delete(&key))
            .await
            .map_err(|e| failed(e.to_string()))?;
        tracing::warn!(module = %self.key, "forgotten without /uninstall (forced)");
        self.record = None;
        self.runner = RunnerState::Unknown;
        Ok(())
    }
}

/// The monotonic instant of a wall-clock time (now, if it has passed).
fn instant_of(at: chrono::DateTime<Utc>) -> Instant {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    Instant::now() + wait.min(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_news_of_the_runner_in_use_matters() {
        let up = || RunnerState::Up {
            runner: Runner {
                container_id: "current".into(),
                endpoint: "127.0.0.1:1".parse().unwrap(),
            },
            settings: crate::test_support::settings(),
        };
        // A container forklet replaced or removed itself: no news.
        let mut state = up();
        state.changed(Some("replaced-earlier"));
        assert_eq!(state.seen(), RunnerSeen::Healthy);
        // The one in use, or any (the engine restarted): look again.
        for id in [Some("current"), None] {
            let mut state = up();
            state.changed(id);
            assert_eq!(state.seen(), RunnerSeen::Unknown, "{id:?}");
        }
        // Stopped on purpose while asleep: its own stop is no news either.
        let mut asleep = RunnerState::StoppedAsleep;
        asleep.changed(None);
        assert_eq!(asleep.seen(), RunnerSeen::StoppedAsleep);
    }
}
