//! `forklet events`, `events -w` and `wait`: the event stream as scripts
//! and people use it.

mod common;

use common::{finish, forklet, line_where, spawn, stdout_lines};
use forklet_state::api::ModulePhase;
use forkletd::testing::{Harness, ModuleYaml, WORKSPACE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_when_the_phase_is_reached_and_fails_on_timeout() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.clone();
    harness.write("ws.yaml", WORKSPACE);
    // Started before the module exists: it waits for it to appear and be ready.
    let waiting = spawn(
        &socket,
        &[
            "wait",
            "module",
            "app",
            "--for=phase=ready",
            "--timeout=60s",
        ],
    );
    let events = spawn(&socket, &["events", "-w"]);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    let (ok, stdout, stderr) = finish(waiting).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "module/app condition met (phase=ready)\n");
    assert_eq!(
        harness.module("app").await.unwrap().phase,
        ModulePhase::Ready
    );

    // Already there: at once. Never reached: non-zero, with the last phase.
    let (ok, _, _) = forklet(&socket, &["wait", "module", "app", "--for=phase=ready"]);
    assert!(ok);
    let (ok, _, stderr) = forklet(
        &socket,
        &[
            "wait",
            "module",
            "app",
            "--for=phase=sleeped",
            "--timeout=1s",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.starts_with("forklet: timed out waiting for module default/app (phase=sleeped) after 1s; last: phase ready"),
        "{stderr}"
    );

    // The follower saw the install that happened after it started.
    let mut events = events;
    let lines = stdout_lines(&mut events);
    let (installed, _, lines) =
        line_where(lines, "an event line", |l| l.contains(" Installed ")).await;
    assert!(installed.contains("module/default/app"), "{installed}");

    // Deletion ends a wait for it, and shows in the stream.
    let gone = spawn(
        &socket,
        &["wait", "module", "app", "--for=delete", "--timeout=60s"],
    );
    harness.remove("app.yaml");
    let (ok, stdout, stderr) = finish(gone).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "module/app deleted\n");
    let (deleted, _, _) = line_where(lines, "an event line", |l| l.contains(" Deleted ")).await;
    assert!(deleted.contains("module/default/app"), "{deleted}");
    let _ = events.kill();
    let _ = events.wait();

    let (ok, history, _) = forklet(&socket, &["events", "--for", "module/app"]);
    assert!(ok);
    assert!(
        history.lines().next().unwrap().starts_with("AT "),
        "{history}"
    );
    assert!(history.contains(" Deleted "), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_a_row_per_change_until_the_module_is_deleted() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.clone();
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness.wait_phase("app", "ready").await;
    let mut watching = spawn(&socket, &["get", "modules", "-w"]);
    let lines = stdout_lines(&mut watching);
    let in_phase =
        |word: &'static str| move |row: &str| row.split_whitespace().nth(3) == Some(word);
    let (header, _, lines) = line_where(lines, "the table", |_| true).await;
    assert!(header.starts_with("NAME "), "{header}");
    harness.write(
        "app.yaml",
        &ModuleYaml {
            hibernated: true,
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let (asleep, _, lines) = line_where(lines, "a row", in_phase("sleeped")).await;
    assert!(asleep.starts_with("app "), "{asleep}");
    harness.remove("app.yaml");
    let (deleted, _, _) = line_where(lines, "a row", in_phase("deleted")).await;
    assert!(deleted.starts_with("app "), "{deleted}");
    let _ = watching.kill();
    let _ = watching.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_workspaces_w_prints_a_row_when_a_workspace_changes_and_when_it_goes() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.clone();
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness.wait_phase("app", "ready").await;
    let mut watching = spawn(&socket, &["get", "workspaces", "-w"]);
    let lines = stdout_lines(&mut watching);
    let in_phase =
        |word: &'static str| move |row: &str| row.split_whitespace().nth(2) == Some(word);
    let (header, _, lines) = line_where(lines, "the table", |_| true).await;
    assert!(header.starts_with("NAME "), "{header}");
    let (row, _, lines) = line_where(lines, "the row", |_| true).await;
    assert!(row.starts_with("dev ") && row.contains(" ready "), "{row}");

    // Put to sleep by hand after the watch began: its own event.
    let (ok, _, stderr) = forklet(&socket, &["sleep", "dev", "--workspace", "--for", "1h"]);
    assert!(ok, "{stderr}");
    let (asleep, _, lines) = line_where(lines, "a row", in_phase("hibernated")).await;
    assert!(asleep.starts_with("dev "), "{asleep}");
    assert!(
        asleep.contains("sleep for "),
        "the override shows: {asleep}"
    );

    // Gone from the manifests: once more, as deleted (its module's removal
    // is the event that makes the watch look).
    harness.remove("ws.yaml");
    harness.remove("app.yaml");
    let (deleted, _, _) = line_where(lines, "a row", in_phase("deleted")).await;
    assert!(deleted.starts_with("dev "), "{deleted}");
    let _ = watching.kill();
    let _ = watching.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_hears_the_daemon_stop_and_fails_saying_so() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.clone();
    let mut following = spawn(&socket, &["events", "-w"]);
    let lines = stdout_lines(&mut following);
    let (header, _, lines) = line_where(lines, "the header", |_| true).await;
    assert!(header.starts_with("AT "), "{header}");
    // An event through the stream: it is open, not still being asked for.
    harness.write("ws.yaml", WORKSPACE);
    let (_, _, _lines) = line_where(lines, "the workspace defined", |row| {
        row.contains("Defined")
    })
    .await;
    harness.stop().await;
    let (ok, _, stderr) = finish(following).await;
    assert!(!ok, "a stream the daemon ended is not a success");
    assert_eq!(
        stderr.trim(),
        "forklet: forkletd ended the event stream (it is stopping)"
    );
}

#[test]
fn a_command_line_that_cannot_mean_anything_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    for args in [
        &["wait", "module", "app", "--for=phase=asleep"][..],
        &["wait", "workspace", "dev", "--for=delete"],
        &["events", "--for", "pod/x"],
        &["logs", "app", "--since", "soon"],
    ] {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_forklet"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
            .status;
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
