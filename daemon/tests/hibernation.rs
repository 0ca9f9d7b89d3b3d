//! Sleeping and waking for real: by schedule, by hand, by a workspace.

use forklet_state::api::{
    EventReason, ModulePhase, OverrideAction, SleepReason, StreamEventView, WorkspacePhase,
};
use forkletd::testing::{Harness, ModuleYaml};
use serde_json::json;

fn workspace(hibernated: bool, schedule: &str) -> String {
    format!(
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {{name: dev}}\nspec:\n  hibernated: {hibernated}\n{schedule}"
    )
}

fn module(name: &str, hibernated: bool) -> String {
    ModuleYaml {
        name,
        hibernated,
        ..ModuleYaml::default()
    }
    .to_string()
}

async fn running(harness: &Harness, container: &str) -> bool {
    let info = harness
        .docker
        .inspect_container(container, None)
        .await
        .unwrap();
    info.state.and_then(|s| s.running).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_puts_a_module_to_sleep_and_wakes_it_with_its_runner_stopped_meanwhile() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    // Asleep for ten seconds, awake for ten, by the second (6-field cron).
    let schedule = "  autoHibernation:\n    enabled: true\n    schedule: '0,20,40 * * * * *'\n    wakeSchedule: '10,30,50 * * * * *'\n    timezone: UTC\n";
    harness.write("workspace.yaml", &workspace(false, schedule));
    harness.write("app.yaml", &module("app", false));

    let asleep = harness
        .wait_until("asleep by schedule", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.phase == ModulePhase::Sleeped)
        })
        .await;
    assert_eq!(asleep.sleep_reason, Some(SleepReason::Schedule));
    let container = asleep.container_id.clone().unwrap();
    harness
        .wait_until("the runner stopped while asleep", || async {
            (!running(&harness, &container).await).then_some(())
        })
        .await;
    let ws = harness.workspaces().await.remove(0);
    assert_eq!(
        ws.schedule.unwrap().wake.as_deref(),
        Some("10,30,50 * * * * *")
    );
    assert!(ws.next_transition.is_some());

    let awake = harness.wait_phase("app", "ready").await;
    assert_eq!(
        awake.container_id.as_deref(),
        Some(container.as_str()),
        "the same runner, started again"
    );
    assert!(running(&harness, &container).await);
    assert_eq!(awake.metadata["installs"], 1, "woken, not reinstalled");
    assert_eq!(awake.metadata["asleep"], json!(false));
    assert_eq!(awake.sleep_reason, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_sleeps_by_hand_survives_a_restart_and_expires() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", &workspace(false, ""));
    harness.write("app.yaml", &module("app", false));
    harness.write("pinned.yaml", &module("pinned", true));
    harness.wait_phase("app", "ready").await;
    harness.wait_phase("pinned", "sleeped").await;

    let (status, set) = harness
        .api_post("/v1/modules/default/app/sleep", &json!({"forSeconds": 4}))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["action"], "sleep");
    let asleep = harness.wait_phase("app", "sleeped").await;
    assert_eq!(asleep.sleep_reason, Some(SleepReason::Override));
    let shown = asleep
        .manual_override
        .expect("the override shows on the module");
    assert_eq!(shown.action, OverrideAction::Sleep);
    assert!(shown.until.is_some());

    harness.restart().await;
    assert_eq!(
        harness.module("app").await.unwrap().phase,
        ModulePhase::Sleeped,
        "the override outlives a restart"
    );

    // It expires on its own.
    let awake = harness.wait_phase("app", "ready").await;
    assert_eq!(awake.metadata["installs"], 1);
    assert_eq!(awake.manual_override, None);

    // An override never wakes what a manifest put to sleep.
    let (status, body) = harness
        .api_post("/v1/modules/default/pinned/resume", &json!({}))
        .await;
    assert_eq!(
        (status.as_u16(), &body["code"]),
        (409, &json!("manifest_decides"))
    );
    assert_eq!(
        body["detail"],
        "module default/pinned's manifest says hibernated: true; an override does not fight it: edit the manifest"
    );
    let (status, _) = harness
        .api_post("/v1/modules/default/nope/sleep", &json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_workspace_sleeps_its_modules_and_wakes_only_those_it_put_to_sleep() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", &workspace(false, ""));
    harness.write("awake.yaml", &module("awake", false));
    harness.write("pinned.yaml", &module("pinned", true));
    harness.wait_phase("awake", "ready").await;
    harness.wait_phase("pinned", "sleeped").await;

    harness.write("workspace.yaml", &workspace(true, ""));
    let slept = harness.wait_phase("awake", "sleeped").await;
    assert_eq!(slept.sleep_reason, Some(SleepReason::Workspace));
    assert_eq!(
        harness.workspaces().await[0].phase,
        WorkspacePhase::Hibernated
    );

    // A module added to a sleeping workspace is installed, then put to sleep.
    harness.write("late.yaml", &module("late", false));
    let late = harness.wait_phase("late", "sleeped").await;
    assert_eq!(
        (
            late.metadata["installs"].clone(),
            late.metadata["asleep"].clone()
        ),
        (json!(1), json!(true))
    );

    harness.write("workspace.yaml", &workspace(false, ""));
    harness.wait_phase("awake", "ready").await;
    harness.wait_phase("late", "ready").await;
    let pinned = harness.module("pinned").await.unwrap();
    assert_eq!(
        pinned.phase,
        ModulePhase::Sleeped,
        "its own manifest still says hibernated"
    );
    assert_eq!(pinned.sleep_reason, Some(SleepReason::Manifest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_s_history_tells_its_manifest_and_its_override_running_out() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let reasons = || async {
        let events: Vec<StreamEventView> = harness
            .api("/v1/events?workspace=default/dev")
            .await
            .unwrap();
        events.into_iter().map(|e| e.reason).collect::<Vec<_>>()
    };
    harness.write("workspace.yaml", &workspace(false, ""));
    harness
        .wait_until("the workspace defined", || async {
            (reasons().await == [EventReason::Defined]).then_some(())
        })
        .await;
    harness.write(
        "workspace.yaml",
        &workspace(false, "  autoHibernation: {enabled: false}\n"),
    );
    harness
        .wait_until("the edit told", || async {
            reasons().await.contains(&EventReason::Edited).then_some(())
        })
        .await;

    // Asleep by hand for a second: then the manifests decide again, and
    // the history says the override ran out (not that someone cleared it).
    let (status, _) = harness
        .api_post(
            "/v1/workspaces/default/dev/sleep",
            &json!({"forSeconds": 1}),
        )
        .await;
    assert_eq!(status, 200);
    harness
        .wait_until("the override ran out", || async {
            reasons()
                .await
                .contains(&EventReason::OverrideExpired)
                .then_some(())
        })
        .await;
    assert_eq!(
        reasons().await,
        [
            EventReason::Defined,
            EventReason::Edited,
            EventReason::OverrideSet,
            EventReason::OverrideExpired
        ]
    );
    assert_eq!(harness.workspaces().await[0].phase, WorkspacePhase::Ready);

    harness.remove("workspace.yaml");
    harness
        .wait_until("the removal told", || async {
            reasons()
                .await
                .contains(&EventReason::Removed)
                .then_some(())
        })
        .await;
}
