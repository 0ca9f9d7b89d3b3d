//! One module's trouble stays its own: the others keep working.

use forklet_state::api::{EventReason, ModulePhase};
use forkletd::testing::{HELLO_IMAGE, Harness, ModuleYaml, WORKSPACE};
use serde_json::json;

/// A hello module with no config schema, so `config` is passed as given.
fn module(name: &str, config: &str, hibernated: bool) -> String {
    ModuleYaml {
        name,
        config,
        hibernated,
        ..ModuleYaml::default()
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_install_fails_that_module_alone() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("good.yaml", &module("good", "{}", false));
    harness.wait_phase("good", "ready").await;

    harness.write(
        "bad.yaml",
        &module("bad", "{reject: 'replicas must be positive'}", false),
    );
    let bad = harness.wait_phase("bad", "failed").await;
    assert_eq!(
        bad.message,
        "install failed: POST /install answered 400 Bad Request (expected 201 Created): replicas must be positive"
    );
    assert!(
        bad.events.iter().any(|e| e.reason == EventReason::Failed),
        "{:?}",
        bad.events
    );

    // The healthy neighbour still answers and still acts on its manifest.
    assert_eq!(
        harness.module("good").await.unwrap().phase,
        ModulePhase::Ready
    );
    harness.write("good.yaml", &module("good", "{}", true));
    let good = harness.wait_phase("good", "sleeped").await;
    assert_eq!(good.metadata["asleep"], json!(true));
    // Still refused, and still being retried: never ready.
    let bad = harness.module("bad").await.unwrap();
    assert!(
        matches!(bad.phase.as_str(), "failed" | "installing") && bad.attempts >= 1,
        "{bad:?}"
    );

    // A module that never installed is still cleaned up when its file goes.
    harness.remove("bad.yaml");
    harness.wait_gone("bad").await;
    assert_eq!(
        harness.containers().await.len(),
        1,
        "only the good runner is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_manifest_starts_nothing_and_says_where_it_is_wrong() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    let with_schema = format!(
        "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: typo}}\nspec:\n  workspace: {{name: dev}}\n  source:\n    raw:\n      kind: Custom\n      metadata: {{name: t, version: 1.0.0, supportedOperatorVersion: '*'}}\n      config:\n        - {{type: integer, name: replicas, alias: replicas, spec: {{min: 1, max: 10}}}}\n      spec: {{image: '{HELLO_IMAGE}'}}\n  config: {{replicas: 11}}\n"
    );
    harness.write("typo.yaml", &with_schema);
    harness.write("good.yaml", &module("good", "{}", false));
    harness.wait_phase("good", "ready").await;

    let typo = harness.wait_phase("typo", "failed").await;
    let file = harness.manifests.path().join("typo.yaml");
    assert_eq!(
        typo.message,
        format!(
            "{}: spec.config.replicas: validation failed for field 'replicas': value 11 is greater than maximum 10",
            file.display()
        )
    );
    assert_eq!(typo.container_id, None);
    assert_eq!(
        harness.containers().await.len(),
        1,
        "no runner for the invalid module"
    );

    // A module naming a workspace nobody defined waits, with the reason shown.
    harness.write(
        "orphan.yaml",
        &ModuleYaml {
            name: "orphan",
            workspace: "nowhere",
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let orphan = harness.wait_phase("orphan", "failed").await;
    assert!(
        orphan
            .message
            .ends_with("spec.workspace: workspace default/nowhere is not defined in any manifest"),
        "{}",
        orphan.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_broken_while_the_daemon_was_down_uninstalls_nothing() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("app.yaml", &module("app", "{}", false));
    let before = harness.wait_phase("app", "ready").await;

    harness.stop().await;
    harness.write(
        "app.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: [half saved",
    );
    harness.restart_stopped().await;

    let kept = harness
        .wait_until("the broken file reported on the module", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.message.contains("keeping the last good version"))
        })
        .await;
    assert_eq!(kept.phase, ModulePhase::Ready);
    assert_eq!(kept.container_id, before.container_id);
    assert_eq!(harness.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_is_retried_with_backoff_until_it_succeeds() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("flaky.yaml", &module("flaky", "{reject: 'not yet'}", false));

    // Failed is not terminal: the step is tried again, the count goes up.
    let retried = harness
        .wait_until("a second failed attempt", || async {
            harness
                .module("flaky")
                .await
                .filter(|m| m.phase == ModulePhase::Failed && m.attempts >= 2)
        })
        .await;
    assert!(
        retried.next_retry.is_some(),
        "a failed module says when it tries again"
    );
    assert!(
        retried
            .message
            .starts_with("install failed: POST /install answered 400"),
        "{}",
        retried.message
    );

    let (status, _) = harness
        .api_post("/v1/modules/default/flaky/retry", &json!(null))
        .await;
    assert_eq!(status, 202);
    let (status, body) = harness
        .api_post("/v1/modules/default/nope/retry", &json!(null))
        .await;
    assert_eq!(
        (status.as_u16(), &body["code"], &body["detail"]),
        (
            404,
            &json!("not_found"),
            &json!("Module default/nope not found")
        )
    );

    // Fixed: it succeeds and the failures no longer count.
    harness.write("flaky.yaml", &module("flaky", "{}", false));
    let fixed = harness.wait_phase("flaky", "ready").await;
    assert_eq!((fixed.attempts, fixed.next_retry), (0, None));
    assert_eq!(fixed.message, "");
}
