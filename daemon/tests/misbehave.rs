//! Modules that break the contract: each reaches a clear state within its
//! deadline, and a healthy module beside them keeps working.

use forklet_state::api::ModulePhase;
use std::time::Duration;

use forkletd::testing::{HELLO_IMAGE, Harness, MISBEHAVE_IMAGE, ModuleYaml, WORKSPACE};
use serde_json::json;

fn module(name: &str, image: &str, config: &str, hibernated: bool) -> String {
    ModuleYaml {
        name,
        image,
        config,
        hibernated,
        ..ModuleYaml::default()
    }
    .to_string()
}

/// Deadlines short enough for a test to see them pass.
async fn harness() -> Option<Harness> {
    Harness::start_with(|config| {
        config.limits.health_deadline = Duration::from_secs(2);
        config.limits.call_timeout = Duration::from_secs(2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_misbehaviour_ends_in_a_clear_failure() {
    let Some(harness) = harness().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("good.yaml", &module("good", HELLO_IMAGE, "{}", false));
    let cases = [
        (
            "unhealthy",
            "{health: never}",
            "install failed: GET /health did not answer healthy within 2s; last: status 503 Service Unavailable",
        ),
        (
            // Said when it stops, not after the health deadline (its
            // container was seen running after the start).
            "crashes",
            "{health: exit}",
            "install failed: runner container",
        ),
        (
            "hangs",
            "{install: hang}",
            "install failed: POST /install: no answer within 2s",
        ),
        (
            "errors",
            "{install: '500'}",
            "install failed: POST /install answered 500 Internal Server Error (expected 201 Created): boom",
        ),
        (
            "garbage",
            "{install: garbage}",
            "install failed: POST /install: response body is not a JSON object: this is not a JSON object",
        ),
        (
            "huge",
            "{install: huge}",
            "install failed: POST /install: response body is larger than 1048576 bytes",
        ),
        (
            "exits",
            "{install: exit}",
            "install failed: POST /install: could not reach the module",
        ),
    ];
    for (name, config, _) in cases {
        harness.write(
            &format!("{name}.yaml"),
            &module(name, MISBEHAVE_IMAGE, config, false),
        );
    }
    for (name, _, message) in cases {
        let failed = harness
            .wait_until(&format!("{name} failed with its reason"), || async {
                harness
                    .module(name)
                    .await
                    .filter(|m| m.phase == ModulePhase::Failed && m.message.starts_with(message))
                    .filter(|m| {
                        name != "crashes"
                            || m.message
                                .contains("stopped before it answered GET /health (exit code 3)")
                    })
            })
            .await;
        assert!(failed.attempts >= 1, "{name}");
    }

    // Meanwhile the healthy module answers and acts on its manifest.
    assert_eq!(
        harness.wait_phase("good", "ready").await.metadata["installs"],
        1
    );
    harness.write("good.yaml", &module("good", HELLO_IMAGE, "{}", true));
    assert_eq!(
        harness.wait_phase("good", "sleeped").await.metadata["asleep"],
        json!(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_stuck_in_a_call_is_still_removed_when_its_file_goes() {
    let Some(harness) = harness().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write(
        "sleepy.yaml",
        &module("sleepy", MISBEHAVE_IMAGE, "{sleep: hang}", true),
    );
    harness.wait_phase("sleepy", "sleeping").await;
    harness.remove("sleepy.yaml");
    harness.wait_gone("sleepy").await;
    assert!(harness.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_uninstall_keeps_the_module_until_it_is_forced_away() {
    let Some(harness) = harness().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write(
        "stuck.yaml",
        &module("stuck", MISBEHAVE_IMAGE, "{uninstall: '500'}", false),
    );
    let ready = harness.wait_phase("stuck", "ready").await;

    // Refused while its manifest still defines it.
    let (status, body) = harness
        .api_post("/v1/modules/default/stuck/forget", &json!(null))
        .await;
    assert_eq!(
        (status.as_u16(), &body["code"]),
        (409, &json!("still_defined"))
    );
    let file = harness.manifests.path().join("stuck.yaml");
    assert_eq!(
        body["detail"],
        format!(
            "{} still defines module default/stuck: delete it from there first",
            file.display()
        )
    );

    harness.remove("stuck.yaml");
    let failed = harness
        .wait_until("the uninstall failed and retried", || async {
            harness
                .module("stuck")
                .await
                .filter(|m| m.phase == ModulePhase::Failed && m.attempts >= 2)
        })
        .await;
    assert!(
        failed
            .message
            .starts_with("uninstall failed: POST /uninstall answered 500"),
        "{}",
        failed.message
    );
    assert_eq!(failed.metadata, ready.metadata, "the metadata is kept");
    assert_eq!(harness.containers().await.len(), 1, "the runner is kept");

    let (status, _) = harness
        .api_post("/v1/modules/default/stuck/forget", &json!(null))
        .await;
    assert_eq!(status, 204);
    assert_eq!(harness.module("stuck").await, None);
    assert!(harness.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_file_removes_the_module_from_every_phase() {
    let Some(harness) = harness().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    // (module, config, hibernated at first, then, the phase to delete it in)
    let cases = [
        ("installing", "{install: hang}", false, None, "installing"),
        ("asleep", "{}", true, None, "sleeped"),
        ("resuming", "{resume: hang}", true, Some(false), "resuming"),
    ];
    for (name, config, hibernated, _, _) in cases {
        harness.write(
            &format!("{name}.yaml"),
            &module(name, MISBEHAVE_IMAGE, config, hibernated),
        );
    }
    for (name, config, _, then, phase) in cases {
        if let Some(hibernated) = then {
            harness.wait_phase(name, "sleeped").await;
            harness.write(
                &format!("{name}.yaml"),
                &module(name, MISBEHAVE_IMAGE, config, hibernated),
            );
        }
        harness.wait_phase(name, phase).await;
        harness.remove(&format!("{name}.yaml"));
    }
    for (name, ..) in cases {
        harness.wait_gone(name).await;
    }
    harness
        .wait_until("every runner removed", || async {
            harness.containers().await.is_empty().then_some(())
        })
        .await;
}
