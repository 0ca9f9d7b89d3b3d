//! Runners that die or vanish come back without a second /install: the
//! module's metadata lives in forklet, not in its container.

use forklet_state::api::ModulePhase;
use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{KillContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use forkletd::testing::{HELLO_IMAGE, Harness, ModuleYaml, WORKSPACE};

fn module(name: &str) -> String {
    ModuleYaml {
        name,
        ..ModuleYaml::default()
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_runner_is_recreated_and_not_reinstalled() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("app.yaml", &module("app"));
    let before = harness.wait_phase("app", "ready").await;
    let old_id = before.container_id.clone().unwrap();

    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    harness
        .docker
        .remove_container(&old_id, Some(force))
        .await
        .unwrap();

    let after = harness
        .wait_until("a new runner", || async {
            harness.module("app").await.filter(|m| {
                m.phase == ModulePhase::Ready && m.container_id.as_deref() != Some(&old_id)
            })
        })
        .await;
    let output = harness.follow_output(after.container_id.as_deref().unwrap());
    output.wait_bodies("health", 1).await;
    assert!(
        output.bodies("install").is_empty(),
        "the new runner was not installed again"
    );
    assert_eq!(after.metadata, before.metadata);
    assert_eq!(harness.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_is_started_again_and_checked() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("app.yaml", &module("app"));
    let before = harness.wait_phase("app", "ready").await;
    let id = before.container_id.clone().unwrap();

    let kill = KillContainerOptionsBuilder::default()
        .signal("SIGKILL")
        .build();
    harness
        .docker
        .kill_container(&id, Some(kill))
        .await
        .unwrap();

    // The runner's own log: a second start, then a health check after it.
    let lines = harness
        .wait_until("the runner started again and checked", || async {
            let lines = harness.output(&id).await;
            let second_start = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l["event"] == "start")
                .nth(1)?
                .0;
            lines[second_start..]
                .iter()
                .any(|l| l["endpoint"] == "health")
                .then_some(lines)
        })
        .await;
    let installs = lines.iter().filter(|l| l["endpoint"] == "install").count();
    assert_eq!(installs, 1, "no /install after the restart");
    let after = harness.wait_phase("app", "ready").await;
    assert_eq!(
        after.container_id.as_deref(),
        Some(id.as_str()),
        "the same runner, started again"
    );
    assert_eq!(after.metadata, before.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_belongs_to_no_module_is_removed() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", WORKSPACE);
    harness.write("app.yaml", &module("app"));
    let app = harness.wait_phase("app", "ready").await;

    // As a crash between creating a runner and recording it would leave one.
    let labels = HashMap::from([
        ("forklet.instance".to_owned(), harness.instance().to_owned()),
        ("forklet.module".to_owned(), "default/ghost".to_owned()),
    ]);
    let body = ContainerCreateBody {
        image: Some(HELLO_IMAGE.into()),
        labels: Some(labels),
        ..Default::default()
    };
    let ghost = harness
        .docker
        .create_container(None, body)
        .await
        .unwrap()
        .id;
    harness.docker.start_container(&ghost, None).await.unwrap();

    harness
        .wait_until("the orphan removed", || async {
            let ids: Vec<String> = harness
                .containers()
                .await
                .into_iter()
                .filter_map(|c| c.id)
                .collect();
            (!ids.contains(&ghost)).then_some(())
        })
        .await;
    let left: Vec<Option<String>> = harness
        .containers()
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        left,
        vec![app.container_id],
        "the module's own runner stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_of_someone_else_under_a_runners_name_is_left_alone_and_named() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    // The name forkletd gives `default/app`'s runner, without its labels.
    let name = format!("forklet-{}-default_app", &harness.instance()[..8]);
    let options = bollard::query_parameters::CreateContainerOptionsBuilder::default()
        .name(&name)
        .build();
    let body = ContainerCreateBody {
        image: Some(HELLO_IMAGE.into()),
        ..Default::default()
    };
    let squatter = harness
        .docker
        .create_container(Some(options), body)
        .await
        .unwrap()
        .id;

    harness.write("workspace.yaml", WORKSPACE);
    harness.write("app.yaml", &module("app"));
    let app = harness
        .wait_until("the module saying its name is taken", || async {
            harness.module("app").await.filter(|m| {
                m.message
                    .contains(&format!("container name {name} is taken"))
            })
        })
        .await;
    let still_there = harness.docker.inspect_container(&squatter, None).await;
    let force = RemoveContainerOptionsBuilder::default().force(true).build();
    let _ = harness
        .docker
        .remove_container(&squatter, Some(force))
        .await;
    assert!(still_there.is_ok(), "the other container was removed");
    assert_ne!(app.phase, ModulePhase::Ready);
    assert_eq!(app.container_id, None, "{app:?}");
}
