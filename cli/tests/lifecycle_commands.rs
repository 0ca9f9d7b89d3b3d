//! `forklet retry`, `forklet delete --force` and `forklet refresh` as a
//! user runs them: the real binary against a real daemon.

mod common;

use common::forklet;

use forkletd::testing::{Harness, MISBEHAVE_IMAGE, ModuleYaml, WORKSPACE};

fn broken(config: &str) -> String {
    ModuleYaml {
        image: MISBEHAVE_IMAGE,
        config,
        ..ModuleYaml::default()
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delete_force_and_refresh_through_the_cli() {
    // Long backoff: only `forklet retry` makes a prompt second attempt.
    let Some(harness) = Harness::start_with(|c| {
        c.retry.base = std::time::Duration::from_secs(3600);
        c.retry.cap = std::time::Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let socket = harness.socket.clone();
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &broken("{install: '500', uninstall: '500'}"));
    let failed = harness.wait_phase("app", "failed").await;
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.operation,
        Some(forklet_state::operation::Operation::Install),
        "which call failed is shown"
    );

    let (ok, stdout, _) = forklet(&socket, &["retry", "app"]);
    assert!(ok);
    assert_eq!(stdout, "module default/app: retrying now\n");
    harness
        .wait_until("a second attempt", || async {
            harness.module("app").await.filter(|m| m.attempts == 2)
        })
        .await;
    let (ok, _, stderr) = forklet(&socket, &["retry", "nope"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "forklet: Module default/nope not found");

    // Installed, with an /uninstall that will fail.
    harness.write("app.yaml", &broken("{uninstall: '500'}"));
    harness.wait_phase("app", "ready").await;

    // Still in a manifest: forgetting it is refused, and says where.
    let (ok, _, stderr) = forklet(&socket, &["delete", "app", "--force"]);
    assert!(!ok);
    assert!(
        stderr.contains("app.yaml still defines module default/app: delete it from there first"),
        "{stderr}"
    );
    let (ok, _, stderr) = forklet(&socket, &["delete", "app"]);
    assert!(!ok && stderr.contains("--force forgets one whose manifest is gone"));

    // Gone from the manifests, /uninstall failing: forced, it is forgotten.
    harness.remove("app.yaml");
    harness
        .wait_until("the uninstall failing", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.message.starts_with("uninstall failed"))
        })
        .await;
    let (ok, stdout, stderr) = forklet(&socket, &["delete", "app", "--force"]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "module default/app forgotten; its runner is removed\n"
    );
    harness.wait_gone("app").await;
    assert!(harness.containers().await.is_empty());

    let (ok, stdout, _) = forklet(&socket, &["refresh"]);
    assert!(ok);
    assert_eq!(stdout, "fetching httpURL definitions again\n");
}
