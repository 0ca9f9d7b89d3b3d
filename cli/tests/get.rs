//! `forklet get` as a user runs it: the real binary against a real daemon
//! running the bundled example manifests.

mod common;

use common::{forklet, line_where, on_terminal, spawn, stdout_lines};
use std::path::Path;
use std::process::Command;

use forkletd::testing::{Harness, ModuleYaml, WORKSPACE, repo_root};
use serde_json::Value;

fn json(socket: &Path, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = forklet(socket, args);
    assert!(ok, "forklet {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|err| panic!("forklet {args:?}: not JSON ({err}): {stdout}"))
}

/// A daemon running the bundled examples (`hello`, `app-installer`, in
/// workspace `dev`), both ready.
async fn examples() -> Option<Harness> {
    let harness = Harness::start().await?;
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
    Some(harness)
}

/// The cell of `row` under the header word `column` of `header`: columns
/// are padded, so each begins where its header does.
fn cell<'a>(header: &str, row: &'a str, column: &str) -> &'a str {
    let (start, _) = header
        .match_indices(column)
        .find(|(at, _)| *at == 0 || header.as_bytes()[at - 1] == b' ')
        .unwrap_or_else(|| panic!("no column {column} in {header}"));
    let after = start + column.len();
    let end = header[after..]
        .find(|c| c != ' ')
        .map_or(row.len(), |gap| after + gap);
    row.get(start..end.min(row.len()))
        .unwrap_or_default()
        .trim()
}

/// `forklet ARGS...` (no daemon needed): exit code and stderr.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(["--socket", "/nonexistent/forkletd.sock"])
        .args(args)
        .output()
        .expect("run forklet");
    assert!(out.stdout.is_empty(), "{args:?} printed {out:?}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_the_bundled_examples_for_people_and_programs() {
    let Some(mut harness) = examples().await else {
        return;
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_shows_more_columns_and_name_shows_only_kind_and_name() {
    let Some(harness) = examples().await else {
        return;
    };
    // A second workspace, asleep by its manifest and with a schedule.
    harness.write(
        "night.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: night}\nspec:\n  hibernated: true\n  autoHibernation:\n    enabled: true\n    schedule: '0 0 20 * * *'\n    wakeSchedule: '0 0 8 * * *'\n    timezone: Europe/Berlin\n",
    );
    harness
        .wait_until("workspace night listed", || async {
            (harness.workspaces().await.len() == 2).then_some(())
        })
        .await;
    let socket = harness.socket.clone();

    let (ok, names, _) = forklet(&socket, &["get", "modules", "-o", "name"]);
    assert!(ok);
    assert_eq!(names, "module/app-installer\nmodule/hello\n");
    let (_, names, _) = forklet(&socket, &["get", "module", "hello", "-o", "name"]);
    assert_eq!(names, "module/hello\n");
    let (_, names, _) = forklet(&socket, &["get", "workspaces", "-o", "name"]);
    assert_eq!(names, "workspace/dev\nworkspace/night\n");
    let (ok, names, _) = forklet(
        &socket,
        &["get", "modules", "-n", "elsewhere", "-o", "name"],
    );
    assert!(ok);
    assert_eq!(names, "", "no modules: no lines, not an empty one");

    // Wide: the table's columns, then image, container, network and
    // definition, then the message, still last.
    let hello = json(&socket, &["get", "module", "hello", "-o", "json"]);
    let (ok, table, _) = forklet(&socket, &["get", "modules", "-o", "wide"]);
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
            "IMAGE",
            "CONTAINER",
            "NETWORK",
            "DEFINITION",
            "MESSAGE"
        ]
    );
    let row = lines[2];
    assert_eq!(cell(lines[0], row, "NAME"), "hello");
    assert_eq!(cell(lines[0], row, "PHASE"), "ready");
    assert_eq!(cell(lines[0], row, "IMAGE"), "forklet-examples/hello:dev");
    let container = hello["containerId"].as_str().unwrap();
    assert_eq!(cell(lines[0], row, "CONTAINER"), &container[..12]);
    let network = hello["network"].as_str().unwrap_or("bridge");
    assert_eq!(cell(lines[0], row, "NETWORK"), network);
    assert_eq!(cell(lines[0], row, "DEFINITION"), "hello 1.0.0");
    let (_, narrow, _) = forklet(&socket, &["get", "modules"]);
    assert!(!narrow.contains("IMAGE"), "{narrow}");

    // A workspace's wide row adds its schedule, network, file and why it sleeps.
    let (ok, table, _) = forklet(&socket, &["get", "workspaces", "-o", "wide"]);
    assert!(ok);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    for column in ["SCHEDULE", "NETWORK", "FILE", "SLEEP REASON"] {
        assert!(header.contains(column), "{column} missing: {table}");
    }
    assert!(header.ends_with("MESSAGE"), "{header}");
    let (dev, night) = (lines[1], lines[2]);
    assert_eq!(cell(header, dev, "SCHEDULE"), "-");
    assert_eq!(cell(header, dev, "NETWORK"), "bridge");
    assert_eq!(cell(header, dev, "SLEEP REASON"), "-");
    assert!(
        cell(header, dev, "FILE").ends_with("workspace.yaml"),
        "{table}"
    );
    assert_eq!(cell(header, night, "PHASE"), "hibernated");
    assert_eq!(
        cell(header, night, "SCHEDULE"),
        r#"sleep "0 0 20 * * *", wake "0 0 8 * * *" (Europe/Berlin)"#
    );
    assert_eq!(
        cell(header, night, "NETWORK"),
        "-",
        "no module reaches its cluster"
    );
    assert_eq!(
        cell(header, night, "SLEEP REASON"),
        "its workspace's manifest says hibernated"
    );
    assert!(
        cell(header, night, "FILE").ends_with("night.yaml"),
        "{table}"
    );

    // Colour: none in a pipe, whatever the format...
    for format in ["table", "wide", "name", "json", "yaml"] {
        let (_, text, _) = forklet(&socket, &["get", "modules", "-o", format]);
        assert!(!text.contains('\x1b'), "-o {format} in a pipe: {text}");
    }
    // ...and on a terminal only the tables' phases, unless NO_COLOR is set.
    let socket = socket.to_str().unwrap();
    if let Some(table) = on_terminal(&["--socket", socket, "get", "workspaces"], &[]) {
        assert!(table.contains("\x1b[32mready\x1b[0m"), "{table:?}");
        assert!(table.contains("\x1b[34mhibernated\x1b[0m"), "{table:?}");
        let plain = on_terminal(
            &["--socket", socket, "get", "workspaces"],
            &[("NO_COLOR", "1")],
        );
        assert!(!plain.unwrap().contains('\x1b'));
        for format in ["name", "json", "yaml"] {
            let args = ["--socket", socket, "get", "modules", "-o", format];
            let text = on_terminal(&args, &[]).unwrap();
            assert!(!text.contains('\x1b'), "-o {format} on a terminal: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_with_name_or_wide_prints_a_name_or_a_wide_row_per_change() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.clone();
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness.wait_phase("app", "ready").await;
    let mut by_name = spawn(&socket, &["get", "modules", "-w", "-o", "name"]);
    let mut wide = spawn(&socket, &["get", "modules", "-w", "-o", "wide"]);
    let (names, rows) = (stdout_lines(&mut by_name), stdout_lines(&mut wide));
    let (first, _, names) = line_where(names, "the names", |_| true).await;
    assert_eq!(first, "module/app");
    let (header, _, rows) = line_where(rows, "the wide table", |_| true).await;
    assert!(header.contains(" IMAGE "), "{header}");

    harness.write(
        "app.yaml",
        &ModuleYaml {
            hibernated: true,
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let asleep = |row: &str| row.split_whitespace().nth(3) == Some("sleeped");
    let (row, before, rows) = line_where(rows, "a wide row", asleep).await;
    assert_eq!(
        cell(&header, &row, "IMAGE"),
        "forklet-examples/hello:dev",
        "{header}\n{row}"
    );
    assert!(before.iter().all(|r| r.starts_with("app ")), "{before:?}");
    let (change, _, names) = line_where(names, "a name per change", |_| true).await;
    assert_eq!(change, "module/app");

    harness.remove("app.yaml");
    let deleted = |row: &str| row.split_whitespace().nth(3) == Some("deleted");
    let (row, _, _) = line_where(rows, "the deleted row", deleted).await;
    assert!(row.starts_with("app "), "{row}");
    let _ = wide.kill();
    let _ = wide.wait();
    // Every line was a name: no header, no row.
    let _ = by_name.kill();
    let _ = by_name.wait();
    let rest: Vec<String> = names.try_iter().collect();
    assert!(rest.iter().all(|l| l == "module/app"), "{rest:?}");
}

#[test]
fn formats_only_get_can_show_are_refused_before_the_daemon_is_asked() {
    // Nothing listens at the socket: these fail as usage errors (2), first.
    let (code, stderr) = refused(&["get", "problems", "-o", "name"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.trim(),
        "forklet: -o name: manifest problems have no names; use -o table, wide, json or yaml"
    );
    let (code, stderr) = refused(&["get", "modules", "-w", "-o", "json"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("forklet events -w -o json|yaml"),
        "{stderr}"
    );
    // Other commands take table, json and yaml only.
    for args in [
        &["events", "-o", "wide"][..],
        &["doctor", "-o", "name"],
        &["validate", "x.yaml", "-o", "wide"],
    ] {
        let (code, stderr) = refused(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(
            stderr.contains("[possible values: table, json, yaml]"),
            "{args:?}: {stderr}"
        );
    }
}
