//! What each kind of edit does to a running module, as the README says.

use bollard::query_parameters::{RemoveImageOptionsBuilder, TagImageOptionsBuilder};
use forklet_state::api::ModulePhase;
use forkletd::testing::{HELLO_IMAGE, Harness, ModuleYaml};
use serde_json::{Value, json};

const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: dev\n  cluster: {server: 'https://cluster.example.invalid:6443'}\n- name: prod\n  cluster: {server: 'https://cluster.example.invalid:7443'}\ncontexts:\n- name: dev\n  context: {cluster: dev}\n- name: prod\n  context: {cluster: prod}\nusers: []\n";

fn workspaces(harness: &Harness) {
    std::fs::write(harness.manifests.path().join("kubeconfig"), KUBECONFIG).unwrap();
    let workspace = |name: &str| {
        format!(
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {{name: {name}}}\nspec:\n  connection: {{type: local, kubeconfig: kubeconfig, context: {name}}}\n"
        )
    };
    harness.write(
        "workspaces.yaml",
        &format!("{}---\n{}", workspace("dev"), workspace("prod")),
    );
}

fn app(workspace: &str, image: &str, config: &str) -> String {
    ModuleYaml {
        workspace,
        image,
        config,
        spec: "permissions: [workspace]",
        ..ModuleYaml::default()
    }
    .to_string()
}

/// Waits until module `app` is ready with `config` applied.
async fn ready_with(harness: &Harness, config: Value) -> forklet_state::api::ModuleView {
    harness
        .wait_until(&format!("app ready with {config}"), || async {
            harness.module("app").await.filter(|m| {
                m.phase == ModulePhase::Ready && Value::Object(m.config.clone()) == config
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_image_and_workspace_edits() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    workspaces(&harness);
    harness.write("app.yaml", &app("dev", HELLO_IMAGE, "{size: 1}"));
    let first = ready_with(&harness, json!({"size": 1})).await;
    let first_id = first.container_id.clone().unwrap();
    let output = harness.follow_output(&first_id);

    // Config: /install again on the same runner, stored metadata kept.
    harness.write("app.yaml", &app("dev", HELLO_IMAGE, "{size: 2}"));
    let resized = ready_with(&harness, json!({"size": 2})).await;
    assert_eq!(resized.container_id.as_deref(), Some(first_id.as_str()));
    let bodies = output.wait_bodies("install", 2).await;
    assert_eq!(
        bodies[1],
        json!({"size": 2, "installs": 1, "installedBy": "hello"})
    );
    assert_eq!(resized.metadata["installs"], 2);

    // Image: a new runner, then /install on it with the same metadata.
    let other = format!("forklet-test/hello:edits-{}", std::process::id());
    let (repo, tag) = other.split_once(':').unwrap();
    harness
        .docker
        .tag_image(
            HELLO_IMAGE,
            Some(TagImageOptionsBuilder::new().repo(repo).tag(tag).build()),
        )
        .await
        .unwrap();
    harness.write("app.yaml", &app("dev", &other, "{size: 2}"));
    let moved = harness
        .wait_until("app on the new image", || async {
            harness.module("app").await.filter(|m| {
                m.phase == ModulePhase::Ready && m.image.as_deref() == Some(other.as_str())
            })
        })
        .await;
    let second_id = moved.container_id.clone().unwrap();
    assert_ne!(second_id, first_id);
    let second = harness.follow_output(&second_id);
    assert_eq!(
        second.wait_bodies("install", 1).await,
        vec![json!({"size": 2, "installs": 2, "installedBy": "hello"})]
    );
    assert_eq!(moved.metadata["installs"], 3);
    assert_eq!(
        harness.containers().await.len(),
        1,
        "the old runner is gone"
    );

    // Workspace: /uninstall from the old one, then a fresh install in the new one.
    harness.write("app.yaml", &app("prod", &other, "{size: 2}"));
    let in_prod = harness
        .wait_until("app in prod", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.workspace == "prod")
        })
        .await;
    let uninstalled = second.finish().await;
    let uninstall: Vec<&Value> = uninstalled
        .iter()
        .filter(|l| l["endpoint"] == "uninstall")
        .map(|l| &l["body"])
        .collect();
    assert_eq!(uninstall, vec![&Value::Object(moved.metadata.clone())]);
    assert_eq!(
        in_prod.metadata,
        json!({"size": 2, "installs": 1, "installedBy": "hello"})
            .as_object()
            .unwrap()
            .clone()
    );
    let kubeconfig =
        std::fs::read_to_string(harness.runner_dir("app").join("workspace_kubeconfig")).unwrap();
    assert!(kubeconfig.contains("current-context: prod"), "{kubeconfig}");
    assert!(
        !kubeconfig.contains("6443"),
        "only prod's cluster: {kubeconfig}"
    );

    let untag = RemoveImageOptionsBuilder::default().noprune(true).build();
    harness
        .docker
        .remove_image(&other, Some(untag), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_changes_nothing_until_it_is_fixed() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    workspaces(&harness);
    harness.write("app.yaml", &app("dev", HELLO_IMAGE, "{size: 1}"));
    let before = ready_with(&harness, json!({"size": 1})).await;

    harness.write(
        "app.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app\n",
    );
    let broken = harness
        .wait_until("the problem shown", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.message.contains("keeping the last good version"))
        })
        .await;
    assert_eq!(
        (broken.phase.as_str(), broken.container_id.clone()),
        ("ready", before.container_id.clone())
    );
    assert_eq!(broken.metadata, before.metadata);

    harness.write("app.yaml", &app("dev", HELLO_IMAGE, "{size: 3}"));
    let fixed = ready_with(&harness, json!({"size": 3})).await;
    assert_eq!(fixed.message, "");
    let reasons: Vec<&str> = fixed.events.iter().map(|e| e.reason.as_str()).collect();
    let problem = reasons
        .iter()
        .position(|r| *r == "ManifestProblem")
        .expect("the problem is in the history");
    assert!(reasons[problem..].contains(&"ManifestFixed"), "{reasons:?}");
    assert_eq!(fixed.container_id, before.container_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_kubeconfig_reaches_the_running_module_without_an_install() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    workspaces(&harness);
    harness.write("app.yaml", &app("dev", HELLO_IMAGE, "{size: 1}"));
    let ready = ready_with(&harness, json!({"size": 1})).await;
    let output = harness.follow_output(ready.container_id.as_deref().unwrap());
    let mounted = harness.runner_dir("app").join("workspace_kubeconfig");
    assert!(
        std::fs::read_to_string(&mounted)
            .unwrap()
            .contains("cluster.example.invalid:6443")
    );

    // New credentials, a recreated cluster: the same file, rewritten.
    std::fs::write(
        harness.manifests.path().join("kubeconfig"),
        KUBECONFIG.replace(
            "cluster.example.invalid:6443",
            "cluster.example.invalid:16443",
        ),
    )
    .unwrap();
    harness
        .wait_until("the runner's kubeconfig rewritten", || async {
            std::fs::read_to_string(&mounted)
                .ok()
                .filter(|text| text.contains("cluster.example.invalid:16443"))
        })
        .await;
    let after = harness.module("app").await.unwrap();
    assert_eq!(after.phase, ModulePhase::Ready);
    assert_eq!(after.container_id, ready.container_id);
    assert_eq!(output.bodies("install").len(), 1, "no second /install");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_rescan_sees_a_kubeconfig_outside_the_directory_change() {
    let Some(harness) =
        Harness::start_with(|c| c.rescan_every = std::time::Duration::from_millis(300)).await
    else {
        return;
    };
    // No event in the manifests directory will say this file changed.
    let elsewhere = tempfile::tempdir().unwrap();
    let kubeconfig = elsewhere.path().join("config");
    std::fs::write(&kubeconfig, KUBECONFIG).unwrap();
    harness.write(
        "ws.yaml",
        &format!(
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {{name: dev}}\nspec:\n  connection: {{type: local, kubeconfig: {}, context: dev}}\n",
            kubeconfig.display()
        ),
    );
    harness.write("app.yaml", &app("dev", HELLO_IMAGE, "{size: 1}"));
    ready_with(&harness, json!({"size": 1})).await;
    std::fs::write(
        &kubeconfig,
        KUBECONFIG.replace(
            "cluster.example.invalid:6443",
            "cluster.example.invalid:26443",
        ),
    )
    .unwrap();
    let mounted = harness.runner_dir("app").join("workspace_kubeconfig");
    harness
        .wait_until("the change seen by a periodic rescan", || async {
            std::fs::read_to_string(&mounted)
                .ok()
                .filter(|text| text.contains("cluster.example.invalid:26443"))
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_or_resource_change_replaces_the_runner() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    workspaces(&harness);
    let module = |spec: &str, metadata: &str| {
        ModuleYaml {
            spec,
            metadata,
            ..ModuleYaml::default()
        }
        .to_string()
    };
    harness.write("app.yaml", &module("permissions: []", ""));
    let plain = harness.wait_phase("app", "ready").await;
    let mounted = harness.runner_dir("app").join("workspace_kubeconfig");
    assert!(!mounted.exists());

    harness.write("app.yaml", &module("permissions: [workspace]", ""));
    let granted = harness
        .wait_until("a new runner with the kubeconfig", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.container_id != plain.container_id)
        })
        .await;
    assert!(mounted.exists());
    let info = harness
        .docker
        .inspect_container(granted.container_id.as_deref().unwrap(), None)
        .await
        .unwrap();
    assert!(
        info.config
            .unwrap()
            .env
            .unwrap()
            .contains(&"KUBECONFIG=/forkspacer/workspace_kubeconfig".to_owned())
    );

    harness.write(
        "app.yaml",
        &module("permissions: [workspace]", "resource_usage: {cpu: 250m}"),
    );
    let resized = harness
        .wait_until("a new runner with CPU shares", || async {
            harness
                .module("app")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.container_id != granted.container_id)
        })
        .await;
    let info = harness
        .docker
        .inspect_container(resized.container_id.as_deref().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(info.host_config.unwrap().cpu_shares, Some(256));
    assert_eq!(
        resized.metadata["installedBy"], "hello",
        "metadata kept across runners"
    );
    assert_eq!(
        harness.containers().await.len(),
        1,
        "the old runners are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_written_slowly_is_read_once_its_writer_is_done() {
    use std::io::Write;
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("workspace.yaml", forkletd::testing::WORKSPACE);
    // Read before the slow writer starts: a rescan for another file that
    // runs while a new file's first bytes land reads them before their
    // events arrive, a race the hold does not close (see the note).
    harness
        .wait_until("the workspace read", || async {
            harness
                .api::<serde_json::Value>("/v1/workspaces/default/dev")
                .await
        })
        .await;
    let manifest = format!(
        "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: app}}\nspec:\n  workspace: {{name: dev}}\n  source:\n    raw:\n      kind: Custom\n      metadata: {{name: app, version: 1.0.0, supportedOperatorVersion: '*'}}\n      spec: {{image: '{HELLO_IMAGE}'}}\n  config:\n    greeting: prod-cluster-eu-west-1\n"
    );
    // As `scp` or a pipe writes it: all but the end, a pause, the rest.
    // Cut there, it is a valid manifest with the wrong config.
    let (start, rest) = manifest.split_at(manifest.len() - 12);
    let mut file = std::fs::File::create(harness.manifests.path().join("app.yaml")).unwrap();
    file.write_all(start.as_bytes()).unwrap();
    // Longer than any wait for a burst of events to settle.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        harness.module("app").await.is_none(),
        "a manifest still being written was acted on"
    );
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);

    let app = ready_with(&harness, json!({"greeting": "prod-cluster-eu-west-1"})).await;
    let output = harness.follow_output(app.container_id.as_deref().unwrap());
    let installs = output.wait_bodies("install", 1).await;
    assert_eq!(installs.len(), 1, "{installs:?}");
    assert_eq!(installs[0]["greeting"], "prod-cluster-eu-west-1");
}
