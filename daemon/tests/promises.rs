//! The README's promises about bad input: a broken edit changes nothing
//! that runs, a file missing for a moment uninstalls nothing, and no name
//! reaches the file system or Docker unchecked.

use forklet_state::api::ModulePhase;
use std::time::Duration;

use forkletd::testing::{Harness, ModuleYaml, WORKSPACE};

fn app() -> String {
    ModuleYaml::default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_error_in_a_running_modules_document_changes_nothing_that_runs() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &app());
    let ready = harness.wait_phase("app", "ready").await;
    let runner = ready.container_id.clone().unwrap();
    let output = harness.follow_output(&runner);

    for (typo, field) in [
        ("  hibernated: false\n", "  hibernated: yes\n"),
        ("  workspace: {name: dev}\n", "  workspace: dev\n"),
        ("  hibernated: false\n", "  hibernate: true\n"),
        ("  config: {}\n", "  config: {}\n  colour: red\n"),
    ] {
        harness.write("app.yaml", &app().replace(typo, field));
        let shown = harness
            .wait_until(&format!("the problem with {field:?} shown"), || async {
                harness
                    .module("app")
                    .await
                    .filter(|m| m.message.contains("app.yaml: spec"))
            })
            .await;
        assert_eq!(shown.phase, ModulePhase::Ready, "{field:?}");
        assert_eq!(shown.container_id.as_deref(), Some(runner.as_str()));
        assert_eq!(shown.metadata["installedBy"], "hello", "metadata kept");
        // Fixed again: the problem goes, and the module was never touched.
        harness.write("app.yaml", &app());
        harness
            .wait_until("the problem gone", || async {
                harness.module("app").await.filter(|m| m.message.is_empty())
            })
            .await;
    }
    assert_eq!(output.bodies("install").len(), 1);
    assert!(output.bodies("uninstall").is_empty());
    assert!(output.bodies("sleep").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_with_a_type_error_is_listed_as_failed_with_its_problem() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    let typo = ModuleYaml {
        name: "typo",
        ..ModuleYaml::default()
    }
    .to_string()
    .replace("hibernated: false", "hibernated: yes");
    harness.write("typo.yaml", &typo);
    let shown = harness
        .wait_until("module typo listed", || harness.module("typo"))
        .await;
    assert_eq!(shown.phase, ModulePhase::Failed);
    assert!(
        shown.message.contains("typo.yaml: spec.hibernated: "),
        "{}",
        shown.message
    );
    assert!(harness.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_missing_for_a_moment_uninstalls_nothing() {
    let Some(harness) = Harness::start_with(|c| c.removal_grace = Duration::from_secs(30)).await
    else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &app());
    let ready = harness.wait_phase("app", "ready").await;
    let output = harness.follow_output(ready.container_id.as_deref().unwrap());

    // As `git checkout` or an unlink-and-create save does it.
    harness.remove("app.yaml");
    harness
        .wait_until("the daemon sees the file gone", || async {
            harness.module("app").await.filter(|m| m.file.is_none())
        })
        .await;
    harness.write("app.yaml", &app());
    let back = harness
        .wait_until("the file back", || async {
            harness.module("app").await.filter(|m| m.file.is_some())
        })
        .await;
    assert_eq!(back.phase, ModulePhase::Ready);
    assert_eq!(back.container_id, ready.container_id);
    assert!(output.bodies("uninstall").is_empty());
    assert_eq!(output.bodies("install").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_absent_past_the_grace_is_uninstalled() {
    let Some(harness) = Harness::start_with(|c| c.removal_grace = Duration::from_millis(500)).await
    else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &app());
    let ready = harness.wait_phase("app", "ready").await;
    let output = harness.follow_output(ready.container_id.as_deref().unwrap());
    harness.remove("app.yaml");
    harness.wait_gone("app").await;
    assert_eq!(
        output
            .finish()
            .await
            .iter()
            .filter(|l| l["endpoint"] == "uninstall")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_kubernetes_names_reach_neither_disk_nor_docker() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    // Where `runners/default/../../x` would have led.
    let outside = harness.state.path().join("x");
    for (file, metadata) in [
        ("dots.yaml", "{name: '../../x'}"),
        ("abs.yaml", "{name: /tmp/forklet-abs}"),
        ("ns.yaml", "{name: app, namespace: '..'}"),
    ] {
        let text = app().replace("metadata: {name: app}", &format!("metadata: {metadata}"));
        harness.write(file, &text);
    }
    let problems = harness
        .wait_until("three problems logged", || async {
            let logs = forkletd::testing::logs();
            (logs.matches("is not a DNS-1123").count() >= 3).then_some(logs)
        })
        .await;
    assert!(problems.contains("dots.yaml: document 1: Module \"../../x\": metadata.name:"));
    let modules: Vec<forklet_state::api::ModuleView> = harness.api("/v1/modules").await.unwrap();
    assert!(modules.is_empty(), "{modules:?}");
    assert!(!outside.exists());
    assert!(!std::path::Path::new("/tmp/forklet-abs").exists());
    assert!(harness.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_whose_names_join_alike_run_side_by_side() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let workspace =
        |ns: &str| WORKSPACE.replace("{name: dev}", &format!("{{name: dev, namespace: {ns}}}"));
    let module = |ns: &str, name: &str| {
        ModuleYaml {
            name,
            ..ModuleYaml::default()
        }
        .to_string()
        .replace(
            &format!("metadata: {{name: {name}}}\nspec:\n  workspace: {{name: dev}}"),
            &format!("metadata: {{name: {name}, namespace: {ns}}}\nspec:\n  workspace: {{name: dev, namespace: {ns}}}"),
        )
    };
    harness.write(
        "ws.yaml",
        &format!("{}---\n{}", workspace("a-b"), workspace("a")),
    );
    harness.write("one.yaml", &module("a-b", "c"));
    harness.write("two.yaml", &module("a", "b-c"));
    for path in ["/v1/modules/a-b/c", "/v1/modules/a/b-c"] {
        harness
            .wait_until(&format!("{path} ready"), || async {
                harness
                    .api::<forklet_state::api::ModuleView>(path)
                    .await
                    .filter(|m| m.phase == ModulePhase::Ready)
            })
            .await;
    }
    let containers = harness.containers().await;
    assert_eq!(containers.len(), 2);
    let one: forklet_state::api::ModuleView = harness.api("/v1/modules/a-b/c").await.unwrap();
    let two: forklet_state::api::ModuleView = harness.api("/v1/modules/a/b-c").await.unwrap();
    assert_ne!(one.container_id, two.container_id);
    assert_eq!(one.attempts + two.attempts, 0, "neither ever failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_bounded_in_number_and_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(harness) = Harness::start().await else {
        return;
    };
    let mut open = Vec::new();
    for _ in 0..100 {
        let mut stream = tokio::net::UnixStream::connect(&harness.socket)
            .await
            .unwrap();
        // Headers that never end (past the limit, the daemon may have
        // closed the connection before they are even written).
        let _ = stream
            .write_all(b"GET /v1/modules HTTP/1.1\r\nHost: forkletd\r\n")
            .await;
        open.push(stream);
    }
    // Every one of them is closed by the daemon: at once past the limit,
    // after the header deadline below it.
    for stream in &mut open {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut buf))
            .await
            .expect("the daemon closes a half-sent request");
        assert!(read.is_err() || buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"));
    }
    let modules: Vec<forklet_state::api::ModuleView> = harness.api("/v1/modules").await.unwrap();
    assert!(modules.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_or_socket_is_refused() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let same_state = forkletd::run(harness.config(), Default::default()).await;
    assert!(
        matches!(same_state, Err(forkletd::Error::StateDirLocked(_))),
        "{same_state:?}"
    );
    let other_state = tempfile::tempdir().unwrap();
    let mut same_socket = harness.config();
    same_socket.state_dir = other_state.path().to_owned();
    let refused = forkletd::run(same_socket, Default::default()).await;
    assert_eq!(
        refused.unwrap_err().to_string(),
        format!(
            "another forkletd is already listening on {}",
            harness.socket.display()
        )
    );
    // The first one is untouched.
    let modules: Vec<forklet_state::api::ModuleView> = harness.api("/v1/modules").await.unwrap();
    assert!(modules.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_keeps_the_stored_metadata() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    let module = |hibernated| {
        ModuleYaml {
            image: forkletd::testing::MISBEHAVE_IMAGE,
            hibernated,
            config: "{sleep: empty, resume: empty, mark: 7}",
            ..ModuleYaml::default()
        }
        .to_string()
    };
    harness.write("app.yaml", &module(false));
    let installed = harness.wait_phase("app", "ready").await;
    assert_eq!(installed.metadata["mark"], 7, "install echoed its body");
    harness.write("app.yaml", &module(true));
    let asleep = harness.wait_phase("app", "sleeped").await;
    assert_eq!(asleep.metadata, installed.metadata);
    harness.write("app.yaml", &module(false));
    let awake = harness.wait_phase("app", "ready").await;
    assert_eq!(awake.metadata, installed.metadata);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifests_directory_replaced_under_its_name_is_watched_again() {
    // No periodic rescan to fall back on: only a working watch sees edits.
    let Some(harness) = Harness::start_with(|c| c.rescan_every = Duration::from_secs(3600)).await
    else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &app());
    harness.wait_phase("app", "ready").await;

    // As `rm -rf` and a fresh clone, or a deploy tool's swap, do it.
    let dir = harness.manifests.path();
    let old = dir.with_extension("old");
    std::fs::rename(dir, &old).unwrap();
    std::fs::create_dir(dir).unwrap();
    for file in ["ws.yaml", "app.yaml"] {
        std::fs::copy(old.join(file), dir.join(file)).unwrap();
    }
    std::fs::remove_dir_all(&old).unwrap();

    let asleep = ModuleYaml {
        hibernated: true,
        ..ModuleYaml::default()
    };
    harness.write("app.yaml", &asleep.to_string());
    harness.wait_phase("app", "sleeped").await;

    // Removed and made again, with no old copy left to delete.
    let saved = tempfile::tempdir().unwrap();
    for file in ["ws.yaml", "app.yaml"] {
        std::fs::copy(dir.join(file), saved.path().join(file)).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir(dir).unwrap();
    for file in ["ws.yaml", "app.yaml"] {
        std::fs::copy(saved.path().join(file), dir.join(file)).unwrap();
    }
    harness.write("app.yaml", &app());
    harness.wait_phase("app", "ready").await;
}
