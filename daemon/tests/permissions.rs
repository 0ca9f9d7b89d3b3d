//! What a runner is given: the control API only with `controller`, the
//! kubeconfig only with `workspace`, and resource_usage as soft Docker limits.

use forklet_state::api::ModulePhase;
use forkletd::testing::{Harness, ModuleYaml};

fn module(name: &str, permissions: &str, usage: &str) -> String {
    let spec = format!("permissions: {permissions}");
    ModuleYaml {
        name,
        spec: &spec,
        metadata: usage,
        config: "{probeControlApi: true}",
        ..ModuleYaml::default()
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_controller_module_reaches_the_control_api() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write(
        "workspace.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n",
    );
    let usage = "resource_usage: {cpu: 500m, memory: 64Mi}";
    harness.write(
        "other.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: other}\n",
    );
    let elsewhere =
        module("elsewhere", "[]", "").replace("workspace: {name: dev}", "workspace: {name: other}");
    harness.write("elsewhere.yaml", &elsewhere);
    harness.wait_phase("elsewhere", "ready").await;
    harness.write("ctl.yaml", &module("ctl", "[controller]", usage));
    harness.write("plain.yaml", &module("plain", "[]", ""));

    let ctl = harness.wait_phase("ctl", "ready").await;
    let plain = harness.wait_phase("plain", "ready").await;
    assert_eq!(ctl.metadata["controlApi"], "HTTP/1.1 200 OK");
    // Least privilege: its own workspace's modules, read-only, no secrets.
    let listed = ctl.metadata["controlApiModules"].as_array().unwrap();
    assert!(
        listed.contains(&"ctl".into()) && !listed.contains(&"elsewhere".into()),
        "{listed:?}"
    );
    assert!(
        ctl.metadata["controlApiSecrets"]
            .as_str()
            .unwrap()
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        ctl.metadata["controlApiForget"]
            .as_str()
            .unwrap()
            .starts_with("HTTP/1.1 404")
    );
    assert_eq!(
        plain.metadata["controlApi"],
        "unreachable: FORKLET_SOCKET is not set"
    );

    let inspect = |id: Option<String>| {
        let docker = harness.docker.clone();
        async move { docker.inspect_container(&id.unwrap(), None).await.unwrap() }
    };
    let ctl_info = inspect(ctl.container_id).await;
    let plain_info = inspect(plain.container_id).await;
    let mounts = |info: &bollard::models::ContainerInspectResponse| -> Vec<String> {
        let mut mounts: Vec<String> = info
            .mounts
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|m| m.destination)
            .collect();
        mounts.sort();
        mounts
    };
    assert_eq!(mounts(&ctl_info), ["/forklet", "/forkspacer"]);
    assert!(
        ctl_info
            .mounts
            .clone()
            .unwrap()
            .iter()
            .all(|m| m.rw == Some(false)),
        "both mounted read-only"
    );
    assert_eq!(
        mounts(&plain_info),
        vec!["/forkspacer".to_owned()],
        "no control socket without the permission"
    );
    let env = |info: &bollard::models::ContainerInspectResponse| {
        info.config.clone().unwrap().env.unwrap()
    };
    assert!(env(&ctl_info).contains(&"FORKLET_SOCKET=/forklet/forkletd.sock".to_owned()));
    assert!(
        !env(&plain_info)
            .iter()
            .any(|e| e.starts_with("FORKLET_SOCKET=") || e.starts_with("KUBECONFIG="))
    );
    assert!(
        !harness
            .runner_dir("plain")
            .join("workspace_kubeconfig")
            .exists(),
        "no kubeconfig without the permission"
    );

    // resource_usage is what a module expects to use: shares and a reservation.
    let host = ctl_info.host_config.unwrap();
    assert_eq!(host.cpu_shares, Some(512));
    assert_eq!(host.memory_reservation, Some(64 << 20));
    assert_eq!(host.memory, Some(0), "no hard memory limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_module_reaches_the_api_again_after_a_restart() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    harness.write(
        "workspace.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n",
    );
    harness.write("ctl.yaml", &module("ctl", "[controller]", ""));
    let before = harness.wait_phase("ctl", "ready").await;
    assert_eq!(before.metadata["controlApi"], "HTTP/1.1 200 OK");
    harness.restart().await;
    // The same runner, adopted; a config edit makes it call the API again.
    let edited = module("ctl", "[controller]", "").replace(
        "{probeControlApi: true}",
        "{probeControlApi: true, round: 2}",
    );
    harness.write("ctl.yaml", &edited);
    let after = harness
        .wait_until("ctl installed again", || async {
            harness
                .module("ctl")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.metadata["installs"] == 2)
        })
        .await;
    assert_eq!(after.container_id, before.container_id);
    assert_eq!(after.metadata["controlApi"], "HTTP/1.1 200 OK");
}
