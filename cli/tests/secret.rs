//! `forklet secret`: created from standard input, listed by name and type
//! only, deleted; the password is never printed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use forkletd::testing::Harness;

/// Runs the CLI off the async runtime, which also serves the daemon.
async fn forklet(socket: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forklet"));
    command.arg("--socket").arg(socket).args(args);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run forklet");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_created_listed_and_deleted_without_showing_the_password() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.as_path();
    let password = "pw-from-stdin-81f3";
    let create = [
        "secret",
        "create",
        "docker-registry",
        "reg",
        "--docker-server",
        "registry.example:5000",
        "--docker-username",
        "me",
        "--docker-password-stdin",
        "--docker-email",
        "me@example.com",
    ];
    let stdin = format!("{password}\n");

    assert_eq!(
        forklet(socket, &create, &stdin).await,
        (true, "secret/reg created\n".into(), String::new())
    );
    let (ok, _, stderr) = forklet(socket, &create, &stdin).await;
    assert!(!ok);
    assert_eq!(stderr, "forklet: secret reg already exists\n");

    let (ok, list, _) = forklet(socket, &["secret", "list"], "").await;
    assert!(ok);
    assert_eq!(
        list,
        "NAME   NAMESPACE   TYPE\nreg    default     docker-registry\n"
    );
    let (_, json, _) = forklet(socket, &["secret", "list", "-o", "json"], "").await;
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{"name": "reg", "namespace": "default", "type": "docker-registry"}])
    );
    assert!(!harness.everything_the_api_says().await.contains(password));

    let no_password = [
        "secret",
        "create",
        "docker-registry",
        "x",
        "--docker-server",
        "s",
        "--docker-username",
        "u",
    ];
    let (ok, stdout, stderr) = forklet(socket, &no_password, "").await;
    assert!(!ok && stdout.is_empty(), "a password is required: {stderr}");

    let deleted = forklet(socket, &["secret", "delete", "reg"], "").await;
    assert_eq!(
        deleted,
        (true, "secret/reg deleted\n".into(), String::new())
    );
    let (ok, _, stderr) = forklet(socket, &["secret", "delete", "reg"], "").await;
    assert!(!ok);
    assert_eq!(stderr, "forklet: secret reg not found\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_secret_is_made_as_kubectl_makes_one_and_kept_while_a_workspace_names_it() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.as_path();
    let kubeconfig = harness.manifests.path().join("kind-dev.kubeconfig");
    let token = "kc-token-9d41e";
    std::fs::write(
        &kubeconfig,
        format!("users:\n- name: u\n  user: {{token: {token}}}\n"),
    )
    .unwrap();
    let from_file = format!("--from-file=kubeconfig={}", kubeconfig.display());
    let create = [
        "secret", "create", "generic", "kind-dev", &from_file, "-n", "team",
    ];
    assert_eq!(
        forklet(socket, &create, "").await,
        (true, "secret/kind-dev created\n".into(), String::new())
    );
    let (_, list, _) = forklet(socket, &["secret", "list"], "").await;
    assert_eq!(
        list,
        "NAME       NAMESPACE   TYPE\nkind-dev   team        generic\n"
    );
    assert!(!harness.everything_the_api_says().await.contains(token));
    assert!(!forkletd::testing::logs().contains(token));

    // A key that Kubernetes would refuse, and a file that is not one.
    let (ok, _, stderr) = forklet(
        socket,
        &[
            "secret",
            "create",
            "generic",
            "x",
            "--from-file=a/b=/etc/hostname",
        ],
        "",
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("\"a/b\" is not a secret key"), "{stderr}");
    let (ok, _, stderr) = forklet(
        socket,
        &[
            "secret",
            "create",
            "generic",
            "x",
            "--from-file=/nonexistent/kc",
        ],
        "",
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.starts_with("forklet: --from-file=/nonexistent/kc: /nonexistent/kc:"),
        "{stderr}"
    );

    harness.write(
        "ws.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\nspec:\n  connection: {type: kubeconfig, secretReference: {name: kind-dev}}\n",
    );
    harness
        .wait_until("the workspace read", || async {
            (!harness.workspaces().await.is_empty()).then_some(())
        })
        .await;
    let (ok, _, stderr) = forklet(socket, &["secret", "delete", "kind-dev"], "").await;
    assert!(!ok);
    assert_eq!(
        stderr,
        "forklet: secret kind-dev is still used by workspace default/dev (delete with --force to remove it anyway)\n"
    );
    let forced = forklet(socket, &["secret", "delete", "kind-dev", "--force"], "").await;
    assert_eq!(
        forced,
        (true, "secret/kind-dev deleted\n".into(), String::new())
    );
}
