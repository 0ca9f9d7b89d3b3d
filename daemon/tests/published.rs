//! Modules as they are published, not only forklet's polite example: a
//! Python process as PID 1 with no SIGTERM handler, running as a non-root
//! `USER`, that takes seconds to start.

use forkletd::testing::{Harness, ModuleYaml, PYTHON_IMAGE, WORKSPACE, build_python_image};
use serde_json::json;

fn python(hibernated: bool) -> String {
    ModuleYaml {
        image: PYTHON_IMAGE,
        hibernated,
        // Read by the module from /forkspacer/config.json, as its user.
        config: "{startDelaySeconds: 2, greeting: hi}",
        spec: "permissions: [workspace]",
        ..ModuleYaml::default()
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_module_running_as_a_user_sleeps_and_wakes_like_any_other() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    build_python_image();
    let kubeconfig = harness.manifests.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: dev\n  cluster: {server: 'https://cluster.example.invalid:6443'}\ncontexts:\n- name: dev\n  context: {cluster: dev}\nusers: []\n",
    )
    .unwrap();
    harness.write(
        "ws.yaml",
        &format!("{WORKSPACE}spec:\n  connection: {{type: local, kubeconfig: kubeconfig}}\n"),
    );
    harness.write("app.yaml", &python(false));
    let ready = harness.wait_phase("app", "ready").await;
    assert_eq!(ready.metadata["installedBy"], "python");
    let runner = ready.container_id.clone().unwrap();
    let info = harness
        .docker
        .inspect_container(&runner, None)
        .await
        .unwrap();
    assert_eq!(info.config.unwrap().user.as_deref(), Some("10001:10001"));
    let lines = harness.output(&runner).await;
    assert_eq!(
        lines[0]["config"],
        json!({"greeting": "hi", "startDelaySeconds": 2}),
        "the module's user read its config"
    );

    // Asleep means stopped; the init passes SIGTERM on, so Python ends by
    // it rather than by the SIGKILL that follows a grace period.
    harness.write("app.yaml", &python(true));
    harness.wait_phase("app", "sleeped").await;
    let state = harness
        .docker
        .inspect_container(&runner, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.running, Some(false), "sleeped means stopped");
    assert_eq!(
        state.exit_code,
        Some(143),
        "ended by SIGTERM (143), not SIGKILL (137)"
    );

    harness.write("app.yaml", &python(false));
    let awake = harness.wait_phase("app", "ready").await;
    assert_eq!(awake.container_id.as_deref(), Some(runner.as_str()));
    let calls: Vec<String> = harness
        .output(&runner)
        .await
        .iter()
        .filter_map(|l| l["endpoint"].as_str().map(str::to_owned))
        .filter(|e| e != "health")
        .collect();
    assert_eq!(calls, ["install", "sleep", "resume"]);
}
