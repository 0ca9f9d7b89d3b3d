//! `forklet export`: manifests the Forkspacer operator reads unchanged,
//! every forklet extension carried over, read back by `validate --operator`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn forklet(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(args)
        .output()
        .expect("run forklet");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .map(|doc| serde_yaml::from_str(doc).unwrap())
        .collect()
}

/// Every extension: a definition file, a kubeconfig file with a context,
/// a time zone.
fn extended(dir: &Path) {
    std::fs::write(
        dir.join("definition.yml.def"),
        "kind: Custom\nmetadata: {name: app, version: 1.0.0, supportedOperatorVersion: '*'}\n\
         spec: {image: my-registry/app:v1, permissions: [workspace], imagePullSecrets: [regcred]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n\
         clusters:\n- {name: dev, cluster: {server: 'https://dev.example.invalid:6443', certificate-authority-data: Q0E=}}\n\
         - {name: other, cluster: {server: 'https://other.example.invalid'}}\n\
         contexts:\n- {name: kind-dev, context: {cluster: dev, user: dev}}\n- {name: other, context: {cluster: other, user: dev}}\n\
         users:\n- {name: dev, user: {token: s3cr3t}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("all.yaml"),
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  \
         connection: {type: kubeconfig, kubeconfig: kubeconfig, context: kind-dev}\n  \
         autoHibernation: {enabled: true, schedule: '0 22 * * *', wakeSchedule: '0 7 * * 1-5', timezone: Europe/Berlin}\n\
         ---\napiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: app}\nspec:\n  \
         workspace: {name: dev}\n  source: {file: definition.yml.def}\n  config: {}\n\
         ---\napiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: fetched}\nspec:\n  \
         workspace: {name: dev}\n  source: {httpURL: 'https://defs.example.invalid/app.yaml'}\n",
    )
    .unwrap();
}

#[test]
fn every_extension_is_carried_over_and_the_output_passes_validate_operator() {
    let dir = tempfile::tempdir().unwrap();
    extended(dir.path());
    let input = dir.path().to_str().unwrap();

    // The input uses every extension, and --operator names each.
    let (code, stdout, _) = forklet(&["validate", "--operator", input]);
    assert_eq!(code, Some(1), "{stdout}");
    for field in [
        "spec.source.file",
        "spec.connection.kubeconfig",
        "spec.connection.context",
        "spec.autoHibernation.timezone",
    ] {
        assert!(
            stdout.contains(&format!(": {field}: a forklet extension")),
            "{field}: {stdout}"
        );
    }

    let (code, yaml, stderr) = forklet(&["export", input, "--namespace", "team"]);
    assert_eq!(code, Some(0), "{stderr}");
    // Credentials only when asked for: what to create is said instead.
    for said in [
        "create registry Secret forkspacer-system/regcred",
        "create Secret team/dev-kubeconfig",
        "its definition comes from https://defs.example.invalid/app.yaml",
    ] {
        assert!(stderr.contains(said), "{said}: {stderr}");
    }
    assert!(
        !yaml.contains("s3cr3t") && !yaml.contains("kind: Secret"),
        "{yaml}"
    );
    let docs = documents(&yaml);
    let find = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap().clone();
    let fetched = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "fetched")
        .unwrap();
    assert_eq!(
        fetched["spec"]["source"],
        serde_json::json!({"httpURL": "https://defs.example.invalid/app.yaml"})
    );
    let module = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "app")
        .unwrap()
        .clone();
    assert_eq!(module["metadata"]["namespace"], "team");
    assert_eq!(module["spec"]["workspace"]["namespace"], "team");
    assert_eq!(
        module["spec"]["source"]["raw"]["spec"]["image"],
        "my-registry/app:v1"
    );
    assert!(module["spec"]["source"].get("file").is_none());

    let workspace = find("Workspace");
    assert_eq!(
        workspace["spec"]["connection"],
        serde_json::json!({
            "type": "kubeconfig",
            "secretReference": {"name": "dev-kubeconfig", "namespace": "team", "key": "kubeconfig"}
        })
    );
    let auto = &workspace["spec"]["autoHibernation"];
    assert_eq!(auto["schedule"], "CRON_TZ=Europe/Berlin 0 22 * * *");
    assert_eq!(auto["wakeSchedule"], "CRON_TZ=Europe/Berlin 0 7 * * 1-5");
    assert!(auto.get("timezone").is_none());

    // Read back: valid, and nothing only forklet reads.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("operator.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let (code, stdout, stderr) = forklet(&["validate", "--operator", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

#[test]
fn the_bundled_examples_export_to_what_the_operator_reads() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/manifests");
    let (code, yaml, stderr) = forklet(&["export", examples.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("operator.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let (code, stdout, stderr) = forklet(&["validate", "--operator", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        !yaml.contains("\n    file:") && !yaml.contains("timezone:"),
        "{yaml}"
    );
}

#[test]
fn what_has_no_operator_form_is_refused_by_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ws.yaml"),
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  \
         connection: {type: local, context: kind-dev}\n",
    )
    .unwrap();
    let (code, yaml, stderr) = forklet(&["export", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(yaml, "");
    assert!(
        stderr.contains(
            "ws.yaml: Workspace default/dev: spec.connection.context: has no operator form"
        ),
        "{stderr}"
    );
}

#[test]
fn include_secrets_writes_the_registry_secret_the_module_pulls_with() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    extended(dir.path());
    let state = tempfile::tempdir().unwrap();
    let input = dir.path().to_str().unwrap();
    let state_dir = state.path().to_str().unwrap();

    // Named but not there: refused by name, nothing printed.
    let store = forklet_state::store::Store::open(&state.path().join("forklet.db")).unwrap();
    let (code, yaml, stderr) = forklet(&[
        "export",
        input,
        "--include-secrets",
        "--state-dir",
        state_dir,
    ]);
    assert_eq!((code, yaml.as_str()), (Some(1), ""));
    assert!(
        stderr.contains("registry secret regcred is named in imagePullSecrets"),
        "{stderr}"
    );

    store
        .create_secret(&forklet_state::store::RegistrySecret {
            name: "regcred".into(),
            server: "my-registry".into(),
            username: "robot".into(),
            password: "hunter2".into(),
        })
        .unwrap();
    let (code, yaml, stderr) = forklet(&[
        "export",
        input,
        "--include-secrets",
        "--state-dir",
        state_dir,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let docs = documents(&yaml);
    let secret = docs
        .iter()
        .find(|d| d["type"] == "kubernetes.io/dockerconfigjson")
        .expect("the registry secret");
    assert_eq!(secret["metadata"]["namespace"], "forkspacer-system");
    assert_eq!(secret["metadata"]["name"], "regcred");
    let config = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["auths"]["my-registry"]["username"], "robot");
    assert_eq!(config["auths"]["my-registry"]["password"], "hunter2");

    // The kubeconfig, cut to its context and with its files embedded.
    let secret = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "dev-kubeconfig")
        .unwrap();
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["metadata"]["name"], "dev-kubeconfig");
    let kubeconfig: Value =
        serde_yaml::from_str(secret["stringData"]["kubeconfig"].as_str().unwrap()).unwrap();
    assert_eq!(kubeconfig["current-context"], "kind-dev");
    assert_eq!(kubeconfig["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        "https://dev.example.invalid:6443"
    );
}

#[test]
fn objects_that_would_land_on_one_name_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for ns in ["a", "b"] {
        std::fs::write(
            dir.path().join(format!("{ns}.yaml")),
            format!("apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {{name: dev, namespace: {ns}}}\n"),
        )
        .unwrap();
    }
    let input = dir.path().to_str().unwrap();
    let (code, _, _) = forklet(&["export", input]);
    assert_eq!(code, Some(0), "apart, they are two");
    let (code, yaml, stderr) = forklet(&["export", input, "--namespace", "team"]);
    assert_eq!((code, yaml.as_str()), (Some(1), ""));
    assert!(
        stderr.contains("metadata.namespace: lands on team/dev as Workspace a/dev does"),
        "{stderr}"
    );
}
