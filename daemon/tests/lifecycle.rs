//! A module's whole life on the real Docker engine: manifest in, install,
//! sleep, resume, daemon restart, manifest out.

use std::os::unix::fs::PermissionsExt;

use forkletd::testing::{HELLO_IMAGE, Harness};
use serde_json::{Value, json};

/// A workspace whose kubeconfig is a file beside it, with two contexts.
fn workspace(harness: &Harness) {
    let kubeconfig = "apiVersion: v1\nkind: Config\ncurrent-context: other\nclusters:\n- name: c\n  cluster: {server: 'https://cluster.example.invalid:6443'}\ncontexts:\n- name: other\n  context: {cluster: c}\n- name: kind-dev\n  context: {cluster: c}\nusers: []\n";
    std::fs::write(harness.manifests.path().join("kubeconfig"), kubeconfig).unwrap();
    harness.write(
        "workspace.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  connection: {type: local, kubeconfig: kubeconfig, context: kind-dev}\n",
    );
}

/// The seed's complete example schema, run by the hello image.
fn app(hibernated: bool) -> String {
    format!(
        r#"apiVersion: batch.forkspacer.com/v1
kind: Module
metadata:
  name: app
spec:
  workspace: {{name: dev}}
  hibernated: {hibernated}
  source:
    raw:
      kind: Custom
      metadata: {{name: custom-app-installer, version: 1.0.0, supportedOperatorVersion: ">= 0.0.0, < 1.0.0"}}
      config:
        - {{type: option, name: environment, alias: env, spec: {{required: true, default: development, values: [development, staging, production]}}}}
        - {{type: boolean, name: enableDebug, alias: debug, spec: {{required: false, default: false}}}}
        - {{type: string, name: namespace, alias: namespace, spec: {{required: true, default: default}}}}
      spec:
        image: {HELLO_IMAGE}
        permissions: [workspace]
  config:
    env: staging
    namespace: my-app
"#
    )
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_lives_through_install_sleep_resume_restart_and_uninstall() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    workspace(&harness);
    harness.write("app.yaml", &app(false));

    // Install: installing -> ready, with the validated config (defaults applied).
    let ready = harness.wait_phase("app", "ready").await;
    let container_id = ready.container_id.clone().expect("a runner container");
    let output = harness.follow_output(&container_id);
    let config = json!({"env": "staging", "debug": false, "namespace": "my-app"});
    assert_eq!(ready.config, object(config.clone()));
    assert_eq!(output.wait_bodies("install", 1).await, vec![config.clone()]);
    assert_eq!(
        ready.metadata,
        object(
            json!({"env": "staging", "debug": false, "namespace": "my-app", "installs": 1, "installedBy": "hello"})
        )
    );
    let reasons: Vec<&str> = ready.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["Preparing", "RunnerStarted", "Installing", "Installed"]
    );

    // The runner: labelled, on loopback only, with /forkspacer mounted read-only.
    let containers = harness.containers().await;
    assert_eq!(containers.len(), 1);
    let info = harness
        .docker
        .inspect_container(&container_id, None)
        .await
        .unwrap();
    let env = info.config.as_ref().unwrap().env.clone().unwrap();
    assert!(env.contains(&"PORT=8080".to_owned()), "{env:?}");
    assert!(
        env.contains(&"KUBECONFIG=/forkspacer/workspace_kubeconfig".to_owned()),
        "{env:?}"
    );
    let ports = info.network_settings.unwrap().ports.unwrap();
    let binding = &ports["8080/tcp"].as_ref().unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    let mount = &info.mounts.unwrap()[0];
    assert_eq!(
        (mount.destination.as_deref(), mount.rw),
        (Some("/forkspacer"), Some(false))
    );

    // What the module saw at start: config.json and a readable kubeconfig.
    let start = &output.lines()[0];
    assert_eq!(start["event"], "start");
    assert_eq!(start["config"], config);
    assert_eq!(start["kubeconfigReadable"], true);
    // On the host: the chosen context is current, and the secret is private
    // by the state dir around it (readable inside, for the image's user).
    let kubeconfig_path = harness.runner_dir("app").join("workspace_kubeconfig");
    let kubeconfig = std::fs::read_to_string(&kubeconfig_path).unwrap();
    assert!(
        kubeconfig.contains("current-context: kind-dev"),
        "{kubeconfig}"
    );
    assert!(
        !kubeconfig.contains("name: other"),
        "minified to the workspace's context: {kubeconfig}"
    );
    assert_eq!(
        std::fs::metadata(&kubeconfig_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert_eq!(
        std::fs::metadata(harness.state.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Sleep: the stored metadata goes back with the config laid over it.
    harness.write("app.yaml", &app(true));
    let asleep = harness.wait_phase("app", "sleeped").await;
    let installed = json!({"env": "staging", "debug": false, "namespace": "my-app", "installs": 1, "installedBy": "hello"});
    assert_eq!(
        output.wait_bodies("sleep", 1).await,
        vec![installed.clone()]
    );
    let mut slept = installed.clone();
    slept["asleep"] = json!(true);
    assert_eq!(asleep.metadata, object(slept.clone()));
    let phases: Vec<&str> = asleep.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(&phases[phases.len() - 2..], ["Sleeping", "Slept"]);

    // Asleep, the runner is stopped: an idle module costs nothing.
    harness
        .wait_until("the runner stopped", || async {
            let info = harness
                .docker
                .inspect_container(&container_id, None)
                .await
                .ok()?;
            (!info.state?.running?).then_some(())
        })
        .await;

    // Resume: the same runner started again, then POST /resume.
    harness.write("app.yaml", &app(false));
    let awake = harness.wait_phase("app", "ready").await;
    assert_eq!(awake.container_id.as_deref(), Some(container_id.as_str()));
    // Following the logs again: the first follow ended when the runner stopped.
    let output = harness.follow_output(&container_id);
    assert_eq!(output.wait_bodies("resume", 1).await, vec![slept]);
    assert_eq!(awake.metadata["asleep"], json!(false));
    let phases: Vec<&str> = awake.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(&phases[phases.len() - 2..], ["Resuming", "Resumed"]);

    // Restart: the runner is adopted (health-checked), never reinstalled.
    let health_before = output.bodies("health").len();
    harness.restart().await;
    output.wait_bodies("health", health_before + 1).await;
    let adopted = harness.wait_phase("app", "ready").await;
    assert_eq!(adopted.container_id.as_deref(), Some(container_id.as_str()));
    assert_eq!(
        output.bodies("install").len(),
        1,
        "no second /install after a restart"
    );
    assert_eq!(adopted.metadata, awake.metadata);
    assert_eq!(harness.containers().await.len(), 1);

    // Delete the file: /uninstall with the metadata, then the runner is gone.
    harness.remove("app.yaml");
    harness.wait_gone("app").await;
    let lines = output.finish().await;
    let uninstall: Vec<&Value> = lines
        .iter()
        .filter(|l| l["endpoint"] == "uninstall")
        .map(|l| &l["body"])
        .collect();
    assert_eq!(uninstall, vec![&Value::Object(awake.metadata.clone())]);
    assert!(
        harness.containers().await.is_empty(),
        "the runner is removed"
    );
    assert!(
        !harness.runner_dir("app").exists(),
        "the runner's files are removed"
    );
}
