//! forkletd killed anywhere: at every named point inside install, sleep,
//! resume and uninstall (a test build aborts there), and at random times.
//! After a restart the module ends where its manifest says, the metadata it
//! returned is kept, and there is exactly one runner per module (none for a
//! deleted one).

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use forkletd::testing::{Harness, ModuleYaml, WORKSPACE};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_forkletd");
const SIGABRT: i32 = 6;

fn app(hibernated: bool) -> String {
    ModuleYaml {
        hibernated,
        config: "{size: 1}",
        ..ModuleYaml::default()
    }
    .to_string()
}

/// The manifest as it stands before the crash.
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    Ready,
    Asleep,
}

/// Brings module `app` to `before` with a clean daemon process, then runs
/// one that aborts at `point` and makes the edit that reaches it.
async fn crash_at(point: &str, before: Before, edit: impl FnOnce(&Harness)) -> Harness {
    crash_then(point, before, edit, |_| {}).await
}

/// As [`crash_at`], with `meanwhile` done to the manifests while the daemon
/// is down.
async fn crash_then(
    point: &str,
    before: Before,
    edit: impl FnOnce(&Harness),
    meanwhile: impl FnOnce(&Harness),
) -> Harness {
    let mut harness = Harness::start().await.expect("checked by the caller");
    harness.write("workspace.yaml", WORKSPACE);
    harness.spawn_binary(BIN, None).await;
    harness.wait_api().await;
    match before {
        Before::Nothing => {}
        Before::Ready => {
            harness.write("app.yaml", &app(false));
            harness.wait_phase("app", "ready").await;
        }
        Before::Asleep => {
            harness.write("app.yaml", &app(true));
            harness.wait_phase("app", "sleeped").await;
        }
    }
    harness.kill();
    harness.spawn_binary(BIN, Some(point)).await;
    harness.wait_api().await;
    edit(&harness);
    let status = harness.wait_exit().await;
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{point}: {}",
        harness.daemon_log()
    );
    assert!(
        harness
            .daemon_log()
            .contains(&format!("crashing at {point}")),
        "{point}"
    );
    meanwhile(&harness);
    harness.spawn_binary(BIN, None).await;
    harness.wait_api().await;
    harness
}

async fn assert_one_runner(harness: &Harness, point: &str) {
    let runners = harness.containers().await;
    assert_eq!(runners.len(), 1, "{point}: exactly one runner: {runners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_install_is_repaired_on_restart() {
    if Harness::start().await.is_none() {
        return;
    }
    for point in ["install:before-call", "install:after-call"] {
        let harness = crash_at(point, Before::Nothing, |h| h.write("app.yaml", &app(false))).await;
        let app = harness.wait_phase("app", "ready").await;
        assert_eq!(
            app.metadata,
            json!({"size": 1, "installs": 1, "installedBy": "hello"})
                .as_object()
                .unwrap()
                .clone()
        );
        assert_one_runner(&harness, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_sleep_or_resume_is_repaired_and_keeps_the_metadata() {
    if Harness::start().await.is_none() {
        return;
    }
    let cases = [
        ("sleep:before-call", Before::Ready, true, "sleeped"),
        ("sleep:after-call", Before::Ready, true, "sleeped"),
        ("resume:before-call", Before::Asleep, false, "ready"),
        ("resume:after-call", Before::Asleep, false, "ready"),
    ];
    for (point, before, hibernated, phase) in cases {
        let harness = crash_at(point, before, |h| h.write("app.yaml", &app(hibernated))).await;
        let app = harness.wait_phase("app", phase).await;
        // What install returned is still there: never rolled back.
        assert_eq!(app.metadata["installs"], 1, "{point}");
        assert_eq!(app.metadata["installedBy"], "hello", "{point}");
        assert_eq!(app.metadata["asleep"], json!(hibernated), "{point}");
        assert_one_runner(&harness, point).await;
    }
}

/// The endpoints a module's runner was called on, in order (health aside).
async fn calls(harness: &Harness) -> Vec<String> {
    let app = harness.module("app").await.expect("module app");
    let output = harness.output(app.container_id.as_deref().unwrap()).await;
    output
        .iter()
        .filter_map(|l| l["endpoint"].as_str())
        .filter(|e| *e != "health")
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_short_then_reversed_is_answered_with_the_reverse_call() {
    if Harness::start().await.is_none() {
        return;
    }
    // The module did what was asked, the daemon died before recording it,
    // and the manifest asks the opposite by the time the daemon is back.
    let cases = [
        (
            "sleep:after-call",
            Before::Ready,
            true,
            "ready",
            vec!["install", "sleep", "resume"],
        ),
        (
            "resume:after-call",
            Before::Asleep,
            false,
            "sleeped",
            vec!["install", "sleep", "resume", "sleep"],
        ),
    ];
    for (point, before, hibernated, phase, expected) in cases {
        let harness = crash_then(
            point,
            before,
            |h| h.write("app.yaml", &app(hibernated)),
            |h| h.write("app.yaml", &app(!hibernated)),
        )
        .await;
        let app = harness.wait_phase("app", phase).await;
        assert_eq!(calls(&harness).await, expected, "{point}");
        assert_eq!(app.metadata["asleep"], json!(!hibernated), "{point}");
        assert_one_runner(&harness, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uninstall_cut_short_then_the_manifest_back_installs_again() {
    if Harness::start().await.is_none() {
        return;
    }
    let harness = crash_then(
        "uninstall:after-call",
        Before::Ready,
        |h| h.remove("app.yaml"),
        |h| h.write("app.yaml", &app(false)),
    )
    .await;
    let back = harness.wait_phase("app", "ready").await;
    assert_eq!(calls(&harness).await, ["install", "uninstall", "install"]);
    assert_eq!(
        back.metadata["installs"], 2,
        "unknown effect: the metadata goes back"
    );

    // Past the answer of /uninstall, the module is known to be gone: back,
    // it starts afresh, as a new one would.
    let harness = crash_then(
        "uninstall:after-remove",
        Before::Ready,
        |h| h.remove("app.yaml"),
        |h| h.write("app.yaml", &app(false)),
    )
    .await;
    let fresh = harness.wait_phase("app", "ready").await;
    assert_eq!(calls(&harness).await, ["install"], "on a new runner");
    assert_eq!(
        fresh.metadata["installs"], 1,
        "no metadata of the uninstalled module"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_uninstall_still_removes_the_module() {
    if Harness::start().await.is_none() {
        return;
    }
    for point in [
        "uninstall:before-call",
        "uninstall:after-call",
        "uninstall:after-remove",
    ] {
        let harness = crash_at(point, Before::Ready, |h| h.remove("app.yaml")).await;
        harness.wait_gone("app").await;
        harness
            .wait_until(&format!("{point}: no runner left"), || async {
                harness.containers().await.is_empty().then_some(())
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_times_it_converges_to_the_manifest() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("app.yaml", &app(false));
    let mut hibernated = false;
    for round in 0..8u64 {
        harness.spawn_binary(BIN, None).await;
        // A different moment of the lifecycle each round: 0 to ~350 ms in.
        tokio::time::sleep(Duration::from_millis(round * 47 % 350)).await;
        harness.kill();
        hibernated = !hibernated;
        harness.write("app.yaml", &app(hibernated));
    }
    harness.spawn_binary(BIN, None).await;
    harness.wait_api().await;
    let app = harness
        .wait_phase("app", if hibernated { "sleeped" } else { "ready" })
        .await;
    assert_eq!(
        app.metadata["installs"], 1,
        "never installed twice: {:?}",
        app.metadata
    );
    assert_eq!(app.metadata["asleep"], json!(hibernated));
    assert_one_runner(&harness, "random kills").await;

    harness.remove("app.yaml");
    harness.wait_gone("app").await;
    harness
        .wait_until("no runner left", || async {
            harness.containers().await.is_empty().then_some(())
        })
        .await;
}
