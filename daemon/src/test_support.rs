//! Values the unit tests of several of forkletd's modules build alike.

use forklet_state::ObjectKey;
use forklet_state::definition::parse_definition;
use forklet_state::desired::DesiredModule;
use forklet_state::store::RunnerSettings;
use serde_json::json;

pub fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name).unwrap()
}

/// A runner of image `img` with no permissions, limits or secrets.
pub fn settings() -> RunnerSettings {
    RunnerSettings {
        image: "img".into(),
        runner_hash: "r".into(),
        kubeconfig: false,
        cpu_shares: None,
        memory_reservation: None,
        pull_secrets: Vec::new(),
        controller: false,
        network: None,
    }
}

/// Module `name` in workspace `default/dev`, with an empty config.
pub fn module(name: &str, hibernated: bool, install_hash: &str) -> DesiredModule {
    let definition = parse_definition(&json!({
        "kind": "Custom",
        "metadata": {"name": "m", "version": "1.0.0", "supportedOperatorVersion": "*"},
        "spec": {"image": "img"}
    }))
    .unwrap();
    DesiredModule {
        key: key(name),
        file: format!("{name}.yaml").into(),
        workspace: key("dev"),
        definition,
        config: Default::default(),
        hibernated,
        kubeconfig: None,
        kubeconfig_stamp: None,
        runner: settings(),
        install_hash: install_hash.into(),
    }
}
