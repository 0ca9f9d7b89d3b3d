//! `forklet get` as a user runs it: the real binary against a real daemon
//! running the bundled example manifests.

mod common;

use common::forklet;
use std::path::Path;

use forkletd::testing::{Harness, repo_root};
use serde_json::Value;

fn json(socket: &Path, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = forklet(socket, args);
    assert!(ok, "forklet {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("forklet {args:?}: not JSON ({err}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_the_bundled_examples_for_people_and_programs() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    for entry in std::fs::read_dir(repo_root().join("examples/manifests")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            harness.manifests.path().join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    harness.wait_phase("hello", "ready").await;
    harness.wait_phase("app-installer", "ready").await;
    let socket = harness.socket.clone();

    let (ok, table, _) = forklet(&socket, &["get", "modules"]);
    assert!(ok);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "NAMESPACE",
            "WORKSPACE",
            "PHASE",
            "AGE",
            "LAST",
            "ACTIVITY",
            "MESSAGE"
        ]
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].starts_with("app-installer") && lines[1].contains(" ready "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("hello") && lines[2].contains(" ready "),
        "{table}"
    );

    let modules = json(&socket, &["get", "modules", "-o", "json"]);
    let hello = &modules.as_array().unwrap()[1];
    for field in [
        "name",
        "namespace",
        "workspace",
        "phase",
        "message",
        "containerId",
        "config",
        "metadata",
        "lastActivity",
    ] {
        assert!(hello.get(field).is_some(), "{field} missing in {hello}");
    }
    assert_eq!(hello["phase"], "ready");
    assert_eq!(hello["config"]["greeting"], "hello from forklet");
    assert_eq!(hello["metadata"]["installs"], 1);

    let one = json(
        &socket,
        &[
            "get",
            "module",
            "app-installer",
            "-n",
            "default",
            "-o",
            "json",
        ],
    );
    assert_eq!(one["name"], "app-installer");
    assert_eq!(one["config"]["env"], "staging");
    assert_eq!(
        one["config"]["debug"], false,
        "the schema default is applied"
    );

    let workspaces = json(&socket, &["get", "workspaces", "-o", "json"]);
    assert_eq!(workspaces[0]["name"], "dev");
    assert_eq!(workspaces[0]["phase"], "ready");
    assert_eq!(workspaces[0]["modules"], 2);
    // The examples' placeholder cluster is a remote name: left as written.
    assert_eq!(
        workspaces[0]["cluster"],
        serde_json::json!({"endpoint": "https://cluster.example.invalid:6443", "via": "direct", "network": null, "reason": null})
    );
    let (_, table, _) = forklet(&socket, &["get", "workspaces"]);
    assert!(
        table.contains(" https://cluster.example.invalid:6443 (direct) "),
        "{table}"
    );
    // ...which `forklet doctor` cannot reach: it says where it stopped, and fails.
    let (ok, report, _) = forklet(&socket, &["doctor"]);
    assert!(!ok, "{report}");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "workspace default/dev");
    assert_eq!(
        lines[1],
        "  route    ok     direct: https://cluster.example.invalid:6443"
    );
    assert!(
        lines[2].starts_with("  connect  FAILED cluster.example.invalid"),
        "{report}"
    );
    assert_eq!(lines.len(), 3, "{report}");
    let (ok, yaml, _) = forklet(&socket, &["get", "workspace", "dev", "-o", "yaml"]);
    assert!(ok && yaml.contains("name: dev"), "{yaml}");

    // A workspace put to sleep by hand for an hour, then woken by hand.
    let (ok, stdout, stderr) = forklet(&socket, &["sleep", "dev", "--workspace", "--for", "1h"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("workspace default/dev: sleep until "),
        "{stdout}"
    );
    harness.wait_phase("hello", "sleeped").await;
    let (_, table, _) = forklet(&socket, &["get", "workspaces"]);
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.contains("hibernated") && row.contains("sleep for 59m"),
        "{table}"
    );
    let (ok, stdout, _) = forklet(&socket, &["resume", "dev", "--workspace"]);
    assert!(ok);
    assert_eq!(
        stdout,
        "workspace default/dev: resume until another override replaces it\n"
    );
    harness.wait_phase("hello", "ready").await;
    // Cleared: the manifests decide again, and a second clear has nothing to do.
    let (ok, stdout, _) = forklet(&socket, &["resume", "dev", "--workspace", "--clear"]);
    assert!(ok);
    assert_eq!(stdout, "workspace default/dev: override cleared\n");
    let (_, table, _) = forklet(&socket, &["get", "workspaces"]);
    assert!(!table.contains("resume"), "{table}");
    let (ok, _, stderr) = forklet(&socket, &["resume", "dev", "--workspace", "--clear"]);
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "forklet: workspace default/dev has no override"
    );
    let (ok, _, stderr) = forklet(&socket, &["sleep", "dev", "--workspace", "--for", "soon"]);
    assert!(!ok && stderr.contains("is not a duration"), "{stderr}");

    let (ok, _, stderr) = forklet(&socket, &["get", "module", "nope"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "forklet: Module default/nope not found");

    harness.stop().await;
    let (ok, stdout, stderr) = forklet(&socket, &["get", "modules"]);
    assert!(!ok, "a stopped daemon is an error");
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "forklet: forkletd is not running at {}",
            socket.display()
        )),
        "{stderr}"
    );
}
