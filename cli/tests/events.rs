//! `forklet events`, `events -w` and `wait`: the event stream as scripts
//! and people use it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::forklet;
use forkletd::testing::{DEADLINE, Harness, ModuleYaml, WORKSPACE};

fn spawn(socket: &std::path::Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child on a blocking thread: (success, stdout, stderr).
async fn finish(child: std::process::Child) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

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
    assert_eq!(harness.module("app").await.unwrap().phase, "ready");

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
    let stdout = events.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let (installed, lines) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect("an event line");
            if line.contains(" Installed ") {
                return (line, lines);
            }
        }
    })
    .await
    .unwrap();
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
    let deleted = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect("an event line");
            if line.contains(" Deleted ") {
                return line;
            }
        }
    })
    .await
    .unwrap();
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
    let stdout = watching.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let next_with = |lines: std::sync::mpsc::Receiver<String>, word: &'static str| {
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = lines.recv_timeout(left).expect("a row");
                if line.split_whitespace().nth(3) == Some(word) {
                    return (line, lines);
                }
            }
        })
    };
    let (header, lines) = tokio::task::spawn_blocking(move || {
        let header = lines.recv_timeout(DEADLINE).expect("the table");
        (header, lines)
    })
    .await
    .unwrap();
    assert!(header.starts_with("NAME "), "{header}");
    harness.write(
        "app.yaml",
        &ModuleYaml {
            hibernated: true,
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let (asleep, lines) = next_with(lines, "sleeped").await.unwrap();
    assert!(asleep.starts_with("app "), "{asleep}");
    harness.remove("app.yaml");
    let (deleted, _) = next_with(lines, "deleted").await.unwrap();
    assert!(deleted.starts_with("app "), "{deleted}");
    let _ = watching.kill();
    let _ = watching.wait();
}
