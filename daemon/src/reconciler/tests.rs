//! The reconciler against a fake engine and fake modules, on tokio's paused
//! clock: coalescing, the concurrency bound, backoff, removal and forced
//! deletion racing a step, a failed call reversed, a worker that panics.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use forklet_state::ObjectKey;
use forklet_state::desired::{DesiredModule, DesiredState};
use forklet_state::operation::Operation;
use forklet_state::store::{ModuleRecord, Phase, Store};
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Command, Context, Supervisor};
use crate::backoff::Backoff;
use crate::control_socket::SocketError;
use crate::hibernation::Hibernation;
use crate::protocol::{CallError, ModuleApi};
use crate::runner_files::RunnerFiles;
use crate::runtime::{Progress, Runner, RunnerSpec, Runtime, RuntimeError};
use crate::test_support::{key, module};

/// How a fake module answers one operation.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    /// Takes this long, then succeeds.
    Slow(Duration),
    /// Fails this many more times, then succeeds.
    Fail(u32),
    /// Never answers.
    Hang,
}

#[derive(Default)]
struct World {
    /// Module -> (container id, port, running).
    runners: HashMap<ObjectKey, (String, u16, bool)>,
    made: u32,
    answers: HashMap<Operation, Answer>,
    /// Every call, with the module and the virtual time it came.
    calls: Vec<(ObjectKey, Operation, Instant)>,
    in_flight: usize,
    most_in_flight: usize,
    /// The next `ensure_runner` panics.
    panic_once: bool,
    /// Runners never answer `GET /health`.
    unhealthy: bool,
    /// Runners stop (exit code 3) before they answer `GET /health`.
    exiting: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    fn answer(&self, operation: Operation, answer: Answer) {
        self.world().answers.insert(operation, answer);
    }

    fn calls(&self, operation: Operation) -> Vec<(ObjectKey, Instant)> {
        self.world()
            .calls
            .iter()
            .filter(|(_, op, _)| *op == operation)
            .map(|(key, _, at)| (key.clone(), *at))
            .collect()
    }
}

impl Runtime for Fake {
    async fn ensure_runner(
        &self,
        spec: &RunnerSpec,
        _progress: Progress<'_>,
    ) -> Result<Runner, RuntimeError> {
        let mut world = self.world();
        if std::mem::take(&mut world.panic_once) {
            drop(world);
            panic!("the fake engine was told to panic");
        }
        let port = 20000 + world.runners.len() as u16;
        world.made += 1;
        let made = world.made;
        let runner = world
            .runners
            .entry(spec.key.clone())
            .or_insert_with(|| (format!("c{made}"), port, true));
        runner.2 = true;
        Ok(Runner {
            container_id: runner.0.clone(),
            endpoint: SocketAddr::from((Ipv4Addr::LOCALHOST, runner.1)),
        })
    }

    async fn stop_runners(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        if let Some(runner) = self.world().runners.get_mut(key) {
            runner.2 = false;
        }
        Ok(())
    }

    async fn remove_runners(&self, key: &ObjectKey) -> Result<(), RuntimeError> {
        self.world().runners.remove(key);
        Ok(())
    }

    async fn stopped(&self, _id: &str) -> Option<i64> {
        if self.world().exiting {
            return Some(3);
        }
        std::future::pending().await
    }
}

impl ModuleApi for Fake {
    async fn wait_healthy(&self, _endpoint: SocketAddr) -> Result<(), CallError> {
        if self.world().exiting {
            std::future::pending::<()>().await;
        }
        if self.world().unhealthy {
            return Err(CallError::NeverHealthy {
                deadline: Duration::from_secs(60),
                last: "told to be unhealthy".into(),
            });
        }
        Ok(())
    }

    async fn call(
        &self,
        endpoint: SocketAddr,
        operation: Operation,
        _body: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, CallError> {
        let answer = {
            let mut world = self.world();
            let key = world
                .runners
                .iter()
                .find(|(_, r)| r.1 == endpoint.port() && r.2)
                .map(|(k, _)| k.clone())
                .expect("calls reach a running runner");
            world.calls.push((key, operation, Instant::now()));
            world.in_flight += 1;
            world.most_in_flight = world.most_in_flight.max(world.in_flight);
            let answer = world.answers.get(&operation).copied().unwrap_or(Answer::Ok);
            if let Answer::Fail(n) = answer {
                let next = if n > 1 {
                    Answer::Fail(n - 1)
                } else {
                    Answer::Ok
                };
                world.answers.insert(operation, next);
            }
            answer
        };
        let result = match answer {
            Answer::Ok => Ok(()),
            Answer::Slow(take) => {
                tokio::time::sleep(take).await;
                Ok(())
            }
            Answer::Fail(_) => Err(CallError::Status {
                path: operation.path(),
                status: reqwest::StatusCode::INTERNAL_SERVER_ERROR,
                expected: reqwest::StatusCode::OK,
                body: "told to fail".into(),
            }),
            Answer::Hang => std::future::pending().await,
        };
        self.world().in_flight -= 1;
        result.map(|()| Some(json!({"by": "fake"}).as_object().unwrap().clone()))
    }
}

fn state(modules: &[DesiredModule]) -> Arc<DesiredState> {
    let mut state = DesiredState::default();
    for module in modules {
        state.modules.insert(module.key.clone(), module.clone());
    }
    Arc::new(state)
}

/// A supervisor over [`Fake`], on a temporary store.
struct Rig {
    fake: Fake,
    store: Arc<Store>,
    desired: watch::Sender<Arc<DesiredState>>,
    commands: mpsc::UnboundedSender<Command>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
    _hibernation: watch::Sender<Arc<Hibernation>>,
}

impl Rig {
    fn start(max_concurrent: usize, fake: Fake, first: Arc<DesiredState>) -> Self {
        let backoff = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        Self::start_with(max_concurrent, fake, first, backoff)
    }

    fn start_with(
        max_concurrent: usize,
        fake: Fake,
        first: Arc<DesiredState>,
        backoff: Backoff,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("forklet.db")).unwrap());
        let shutdown = CancellationToken::new();
        let ctx = Arc::new(Context {
            store: store.clone(),
            writes: crate::store_thread::StoreThread::start(store.clone()),
            runtime: fake.clone(),
            client: fake.clone(),
            files: RunnerFiles::new(dir.path()),
            permits: Semaphore::new(max_concurrent),
            shutdown: shutdown.clone(),
            controller_dirs: Box::new(|w| Err(SocketError::SharedDirectory(w.to_string().into()))),
            backoff,
            removal_grace: Duration::from_secs(5),
            stop_runners_while_asleep: true,
            clusters: watch::channel(Default::default()).1,
            look_again: None,
            service: Default::default(),
        });
        let (desired, desired_rx) = watch::channel(first);
        let (hibernation, hibernation_rx) = watch::channel(Arc::new(Hibernation::default()));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            Supervisor::new(ctx)
                .run(desired_rx, hibernation_rx, commands_rx)
                .await
                .unwrap();
        });
        Self {
            fake,
            store,
            desired,
            commands,
            shutdown,
            task,
            _dir: dir,
            _hibernation: hibernation,
        }
    }

    /// Waits (in virtual time, at most an hour of it) until `probe` holds
    /// for module `name`'s record (`None`: no record).
    async fn until(&self, what: &str, probe: impl Fn(Option<&ModuleRecord>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let records = self.store.modules().unwrap();
            if probe(records.first()) {
                return;
            }
            assert!(Instant::now() < deadline, "never reached: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn until_calls(&self, operation: Operation, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(3600);
        while self.fake.calls(operation).len() < count {
            assert!(Instant::now() < deadline, "never {count} {operation} calls");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A rig whose one module, `app`, is installed and ready.
    async fn with_app_ready(fake: Fake) -> Self {
        let rig = Self::start(4, fake, state(&[module("app", false, "h")]));
        rig.until("ready", phase_is(Phase::Ready)).await;
        rig
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn phase_is(phase: Phase) -> impl Fn(Option<&ModuleRecord>) -> bool {
    move |r| r.is_some_and(|r| r.phase == phase)
}

/// In `phase` with no call under way or failed.
fn settled_in(phase: Phase) -> impl Fn(Option<&ModuleRecord>) -> bool {
    move |r| r.is_some_and(|r| r.phase == phase && r.operation.is_none())
}

#[tokio::test(start_paused = true)]
async fn edits_made_during_a_step_coalesce_into_one_more_install() {
    let fake = Fake::default();
    fake.answer(Operation::Install, Answer::Slow(Duration::from_secs(10)));
    let rig = Rig::start(4, fake.clone(), state(&[module("app", false, "h1")]));
    rig.until_calls(Operation::Install, 1).await;
    for hash in ["h2", "h3", "h4"] {
        rig.desired
            .send_replace(state(&[module("app", false, hash)]));
        tokio::task::yield_now().await;
    }
    rig.until("installed with the last edit", |r| {
        r.is_some_and(|r| r.installed_hash.as_deref() == Some("h4") && r.phase == Phase::Ready)
    })
    .await;
    assert_eq!(
        fake.calls(Operation::Install).len(),
        2,
        "the first, then the last"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_more_modules_act_at_once_than_max_concurrent() {
    let fake = Fake::default();
    fake.answer(Operation::Install, Answer::Slow(Duration::from_secs(10)));
    let names = ["a", "b", "c", "d", "e"];
    let modules: Vec<_> = names.iter().map(|n| module(n, false, "h")).collect();
    let rig = Rig::start(2, fake.clone(), state(&modules));
    rig.until_calls(Operation::Install, names.len()).await;
    rig.until("all ready", |_| {
        let records = rig.store.modules().unwrap();
        records.len() == names.len() && records.iter().all(|r| r.phase == Phase::Ready)
    })
    .await;
    assert_eq!(fake.world().most_in_flight, 2);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_backs_off_exponentially_until_it_succeeds() {
    let fake = Fake::default();
    fake.answer(Operation::Install, Answer::Fail(3));
    let rig = Rig::start(4, fake.clone(), state(&[module("app", false, "h")]));
    rig.until("failed once", phase_is(Phase::Failed)).await;
    let failed = rig.store.modules().unwrap().remove(0);
    assert_eq!(
        failed.operation,
        Some(Operation::Install),
        "which call failed is kept"
    );
    assert!(
        failed
            .message
            .starts_with("install failed: POST /install answered 500")
    );
    rig.until("ready after the failures", phase_is(Phase::Ready))
        .await;
    let record = rig.store.modules().unwrap().remove(0);
    assert_eq!((record.attempts, record.operation), (0, None));
    let times: Vec<Instant> = fake
        .calls(Operation::Install)
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(times.len(), 4);
    // Waits of at least half of 1 s, 2 s, 4 s (the jitter takes up to half).
    for (gap, least) in times.windows(2).zip([500, 1000, 2000]) {
        let waited = gap[1] - gap[0];
        assert!(
            waited >= Duration::from_millis(least),
            "{waited:?} < {least} ms"
        );
    }
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_sleep_then_awake_is_answered_with_resume() {
    let fake = Fake::default();
    let rig = Rig::with_app_ready(fake.clone()).await;
    fake.answer(Operation::Sleep, Answer::Fail(100));
    rig.desired.send_replace(state(&[module("app", true, "h")]));
    rig.until("sleep failed", phase_is(Phase::Failed)).await;
    // The module may have slept before it failed: resume, never assume.
    rig.desired
        .send_replace(state(&[module("app", false, "h")]));
    rig.until_calls(Operation::Resume, 1).await;
    rig.until("ready again", settled_in(Phase::Ready)).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn removal_abandons_a_hung_install_and_uninstalls() {
    let fake = Fake::default();
    fake.answer(Operation::Install, Answer::Hang);
    let rig = Rig::start(4, fake.clone(), state(&[module("app", false, "h")]));
    rig.until_calls(Operation::Install, 1).await;
    rig.desired.send_replace(state(&[]));
    rig.until("forgotten", |r| r.is_none()).await;
    assert_eq!(fake.calls(Operation::Uninstall).len(), 1);
    assert!(fake.world().runners.is_empty());
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_module_absent_for_less_than_the_grace_is_left_alone() {
    let fake = Fake::default();
    let rig = Rig::with_app_ready(fake.clone()).await;
    rig.desired.send_replace(state(&[]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    rig.desired
        .send_replace(state(&[module("app", false, "h")]));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(fake.calls(Operation::Uninstall).is_empty());
    rig.until("still ready", phase_is(Phase::Ready)).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_forced_deletion_wins_over_a_hung_uninstall() {
    let fake = Fake::default();
    fake.answer(Operation::Uninstall, Answer::Hang);
    let rig = Rig::with_app_ready(fake.clone()).await;
    rig.desired.send_replace(state(&[]));
    rig.until_calls(Operation::Uninstall, 1).await;
    let (reply, answer) = oneshot::channel();
    rig.commands
        .send(Command::ForceDelete(key("app"), reply))
        .unwrap();
    answer.await.unwrap().unwrap();
    rig.until("forgotten", |r| r.is_none()).await;
    assert!(fake.world().runners.is_empty());
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_forced_deletion_of_a_module_still_defined_is_refused() {
    let fake = Fake::default();
    let rig = Rig::with_app_ready(fake.clone()).await;
    let (reply, answer) = oneshot::channel();
    rig.commands
        .send(Command::ForceDelete(key("app"), reply))
        .unwrap();
    let refused = answer.await.unwrap().unwrap_err();
    assert_eq!(
        refused.to_string(),
        "app.yaml still defines module default/app: delete it from there first"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_panics_is_noticed_and_its_module_retried() {
    let fake = Fake::default();
    fake.world().panic_once = true;
    let rig = Rig::start(4, fake.clone(), state(&[module("app", false, "h")]));
    rig.until("marked failed", |r| {
        r.is_some_and(|r| {
            r.phase == Phase::Failed
                && r.message == "internal error: panicked: the fake engine was told to panic"
        })
    })
    .await;
    rig.until("ready after the restart", phase_is(Phase::Ready))
        .await;
    assert_eq!(fake.calls(Operation::Install).len(), 1);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_asleep_module_has_no_running_runner() {
    let fake = Fake::default();
    let rig = Rig::start(4, fake.clone(), state(&[module("app", true, "h")]));
    rig.until("asleep", phase_is(Phase::Sleeped)).await;
    assert!(
        !fake.world().runners[&key("app")].2,
        "stopped before sleeped"
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_override_goes_with_its_module_once_the_grace_is_over() {
    use forklet_state::hibernation::{Override, OverrideAction, Scope};
    let fake = Fake::default();
    let rig = Rig::with_app_ready(fake.clone()).await;
    let sleep = Override {
        action: OverrideAction::Sleep,
        until: None,
    };
    rig.store
        .set_override(Scope::Module, &key("app"), &sleep)
        .unwrap();
    rig.desired.send_replace(state(&[]));
    rig.until("forgotten", |r| r.is_none()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rig.store.overrides(chrono::Utc::now()).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the override outlived its module"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_module_wanted_again_abandons_its_hung_uninstall() {
    let fake = Fake::default();
    fake.answer(Operation::Uninstall, Answer::Hang);
    let rig = Rig::with_app_ready(fake.clone()).await;
    rig.desired.send_replace(state(&[]));
    rig.until_calls(Operation::Uninstall, 1).await;
    rig.desired
        .send_replace(state(&[module("app", false, "h")]));
    // The uninstall may have done anything: installed again, then settled.
    rig.until_calls(Operation::Install, 2).await;
    rig.until("ready again", settled_in(Phase::Ready)).await;
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_module_that_never_received_a_call_is_removed_without_one() {
    let fake = Fake::default();
    fake.world().unhealthy = true;
    let rig = Rig::start(4, fake.clone(), state(&[module("app", false, "h")]));
    rig.until("failed unhealthy", |r| {
        r.is_some_and(|r| r.phase == Phase::Failed && r.operation.is_none())
    })
    .await;
    rig.desired.send_replace(state(&[]));
    rig.until("forgotten", |r| r.is_none()).await;
    assert!(fake.world().calls.is_empty(), "no /install, no /uninstall");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_retry_asked_for_runs_a_failed_step_at_once_not_after_its_backoff() {
    let fake = Fake::default();
    fake.answer(Operation::Install, Answer::Fail(1));
    let hour = Duration::from_secs(3600);
    let backoff = Backoff {
        base: hour,
        cap: hour,
    };
    let rig = Rig::start_with(
        4,
        fake.clone(),
        state(&[module("app", false, "h")]),
        backoff,
    );
    rig.until("failed", phase_is(Phase::Failed)).await;
    let asked = Instant::now();
    let (reply, answer) = oneshot::channel();
    rig.commands
        .send(Command::Retry(key("app"), reply))
        .unwrap();
    assert!(answer.await.unwrap(), "the worker took the retry");
    rig.until("ready", phase_is(Phase::Ready)).await;
    let again = fake.calls(Operation::Install)[1].1;
    // The backoff alone waits at least half an hour. (Virtual time runs on
    // while the store's thread writes, hence no tighter bound.)
    assert!(again - asked < hour / 4, "{:?}", again - asked);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_runner_that_stops_before_it_is_healthy_fails_the_step_at_once() {
    let fake = Fake::default();
    fake.world().exiting = true;
    let rig = Rig::start(4, fake.clone(), state(&[module("app", false, "h")]));
    let started = Instant::now();
    rig.until("failed", phase_is(Phase::Failed)).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not after the health deadline"
    );
    let failed = rig.store.modules().unwrap().remove(0);
    assert!(
        failed
            .message
            .ends_with("stopped before it answered GET /health (exit code 3)"),
        "{}",
        failed.message
    );
    // The next try looks at the runner again, and this time it answers.
    fake.world().exiting = false;
    rig.until("ready", phase_is(Phase::Ready)).await;
    assert_eq!(fake.calls(Operation::Install).len(), 1);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn news_of_its_runner_makes_a_worker_look_again_and_not_install_again() {
    let fake = Fake::default();
    let rig = Rig::with_app_ready(fake.clone()).await;
    let made = || fake.world().made;
    // News of a container that is not the module's runner changes nothing.
    rig.commands
        .send(Command::RunnerChanged(key("app"), "elsewhere".into()))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(made(), 1);
    // The runner went away, and the engine says so.
    fake.world().runners.remove(&key("app"));
    rig.commands
        .send(Command::RunnerChanged(key("app"), "c1".into()))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3600);
    while made() < 2 {
        assert!(Instant::now() < deadline, "the runner was never made again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.until("ready again", phase_is(Phase::Ready)).await;
    assert_eq!(
        fake.calls(Operation::Install).len(),
        1,
        "adopted, not installed"
    );
    rig.stop().await;
}
