//! `forklet validate`: the daemon's rules, offline, with the exact words a
//! user reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed")
        .join(name)
}

/// Runs `forklet validate ARGS`; returns exit code, stdout, stderr.
fn validate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("validate")
        .args(args)
        .output()
        .expect("run forklet");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().expect("an exit code"),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn every_example_of_the_reference_is_valid() {
    let workspace = seed("dev-workspace.yaml");
    for example in [
        "complete-definition.yaml",
        "simple-definition.yaml",
        "private-registry-definition.yaml",
        "controller-definition.yaml",
        "my-module-resource.yaml",
        "deploy-module.yaml",
        "usage-url-module.yaml",
        "usage-raw-module.yaml",
    ] {
        let (code, stdout, stderr) =
            validate(&[workspace.to_str().unwrap(), seed(example).to_str().unwrap()]);
        assert_eq!(code, 0, "{example}:\n{stdout}{stderr}");
        assert!(
            stdout.trim_end().ends_with(": valid"),
            "{example}: {stdout}"
        );
    }
}

#[test]
fn an_unfetched_url_is_noted_but_not_a_failure() {
    let module = seed("deploy-module.yaml");
    let (code, stdout, _) = validate(&[
        seed("dev-workspace.yaml").to_str().unwrap(),
        module.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!(
            "{}: Module default/my-app: spec.source.httpURL: not checked: \
             https://your-server.com/resources/my-module-resource.yaml was not fetched (pass --fetch)\n\
             2 files, 2 objects: valid\n",
            module.display()
        )
    );
}

/// Each case: a file's text and the one line `validate` must print for it.
#[test]
fn each_rule_reports_file_object_field_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n";
    std::fs::write(dir.path().join("ws.yaml"), workspace).unwrap();
    let module = |definition: &str, config: &str| {
        format!(
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: m, namespace: team}}\nspec:\n  workspace: {{name: dev, namespace: default}}\n  source:\n    raw: {definition}\n  config: {config}\n"
        )
    };
    let ok_meta = "{name: m, version: 1.0.0, supportedOperatorVersion: '>= 0.0.0, < 1.0.0'}";
    let cases = [
        (
            module(&format!("{{kind: Custom, metadata: {ok_meta}, spec: {{image: i}}}}"), "{a: 1}"),
            None,
        ),
        (
            module("{kind: Helm, metadata: {name: m}}", "{}"),
            Some("Module team/m: spec.source.raw.kind: kind \"Helm\" is not supported by forklet (only Custom)"),
        ),
        (
            module(&format!("{{kind: Custom, metadata: {ok_meta}, spec: {{image: i, permissions: [root]}}}}"), "{}"),
            Some("Module team/m: spec.source.raw.spec.permissions[0]: unknown variant `root`, expected `workspace` or `controller`"),
        ),
        (
            module("{kind: Custom, metadata: {name: m, version: 1.0.0, supportedOperatorVersion: '^1.0'}, spec: {image: i}}", "{}"),
            Some("Module team/m: spec.source.raw.metadata.supportedOperatorVersion: \"^1.0\" does not admit operator version 0.1.20, the version whose definitions forklet runs"),
        ),
        (
            module(
                &format!("{{kind: Custom, metadata: {ok_meta}, config: [{{type: integer, name: r, alias: replicas, spec: {{max: 10}}}}], spec: {{image: i}}}}"),
                "{replicas: 11}",
            ),
            Some("Module team/m: spec.config.replicas: validation failed for field 'replicas': value 11 is greater than maximum 10"),
        ),
        (
            module(&format!("{{kind: Custom, metadata: {ok_meta}, spec: {{image: i}}}}"), "{}").replace("name: dev,", "name: prod,"),
            Some("Module team/m: spec.workspace: workspace default/prod is not defined in any manifest"),
        ),
        (
            "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: m, namespace: team}\nspec:\n  workspace: {name: dev}\n  source: {configMap: {name: c}}\n".into(),
            Some("Module team/m: spec.source.configMap: not available without Kubernetes (use raw, httpURL, or the forklet extension file)"),
        ),
        (
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: w}\nspec:\n  connection: {type: kubeconfig}\n".into(),
            Some("Workspace default/w: spec.connection: type kubeconfig needs secretReference (a secret made with `forklet secret create generic NAME --from-file=kubeconfig=PATH`) or the forklet extension connection.kubeconfig (a file path)"),
        ),
        (
            "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: w}\nspec: {from: {name: dev}}\n".into(),
            Some("Workspace default/w: spec.from: forking a workspace is not available without Kubernetes"),
        ),
        (
            "kind: Custom\nmetadata: {name: Bad, version: 1.0.0, supportedOperatorVersion: '*'}\nspec: {image: i}\n".into(),
            Some("document 1: Custom Bad: metadata.name: \"Bad\" is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"),
        ),
    ];
    let ws = dir.path().join("ws.yaml");
    for (text, expected) in cases {
        let file = dir.path().join("case.yaml");
        std::fs::write(&file, &text).unwrap();
        let (code, stdout, stderr) = validate(&[ws.to_str().unwrap(), file.to_str().unwrap()]);
        match expected {
            None => assert_eq!(code, 0, "{text}\n{stdout}{stderr}"),
            Some(line) => {
                assert_eq!(code, 1, "{text}\n{stdout}");
                let lines: Vec<&str> = stdout.lines().collect();
                assert_eq!(
                    lines[0],
                    format!("{}: {line}", file.display()),
                    "for\n{text}"
                );
                // A bare definition is checked but is no object to run.
                let objects = if text.starts_with("kind: Custom") {
                    "1 object"
                } else {
                    "2 objects"
                };
                assert_eq!(lines[1], format!("2 files, {objects}: 1 problem"));
            }
        }
    }
}

#[test]
fn json_output_carries_the_same_problems() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {name: m}\nspec:\n  workspace: {name: dev}\n  source: {}\n  hibernate: true\n").unwrap();
    let (code, stdout, _) = validate(&[file.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["files"], 1);
    let problem = &report["problems"][0];
    assert_eq!(problem["file"], file.to_str().unwrap());
    assert_eq!(problem["kind"], "Module");
    assert_eq!(
        problem["object"],
        serde_json::json!({"namespace": "default", "name": "m"})
    );
    assert_eq!(problem["field"], "spec.hibernate");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown field `hibernate`")
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(validate(&[]).0, 2);
    let (code, _, stderr) = validate(&["/nonexistent/forklet"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "forklet: /nonexistent/forklet: No such file or directory (os error 2)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_checks_url_definitions_too() {
    let definition = std::fs::read_to_string(seed("my-module-resource.yaml")).unwrap();
    let app = axum::Router::new().route(
        "/my-module-resource.yaml",
        axum::routing::get(move || async move { definition }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let module = std::fs::read_to_string(seed("deploy-module.yaml"))
        .unwrap()
        .replace("https://your-server.com/resources", &base);
    std::fs::write(dir.path().join("module.yaml"), &module).unwrap();
    std::fs::copy(seed("dev-workspace.yaml"), dir.path().join("ws.yaml")).unwrap();
    let dir_arg = dir.path().to_str().unwrap().to_owned();

    let (code, stdout, _) = tokio::task::spawn_blocking({
        let dir_arg = dir_arg.clone();
        move || validate(&[&dir_arg, "--fetch"])
    })
    .await
    .unwrap();
    assert_eq!((code, stdout.as_str()), (0, "2 files, 2 objects: valid\n"));

    std::fs::write(
        dir.path().join("module.yaml"),
        module.replace("replicas: 3", "replicas: 11"),
    )
    .unwrap();
    let (code, stdout, _) = tokio::task::spawn_blocking(move || validate(&[&dir_arg, "--fetch"]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(
        stdout.contains("Module default/my-app: spec.config.replicas: validation failed for field 'replicas': value 11 is greater than maximum 10"),
        "{stdout}"
    );
}

#[test]
fn a_directory_is_read_as_the_daemon_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("secret.yaml");
    std::fs::write(
        &elsewhere,
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("link.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("fifo.yaml: cannot be read: is not a regular file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("link.yaml: is a symbolic link to"),
        "{stdout}"
    );
    assert!(
        stdout.contains("zero.yaml: is a symbolic link to /dev/zero"),
        "{stdout}"
    );
}
