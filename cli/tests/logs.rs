//! `forklet logs`: a module's output through the daemon, as `docker logs`
//! shows a container's.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::forklet;
use forkletd::testing::{DEADLINE, Harness, ModuleYaml, WORKSPACE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_what_the_module_printed_and_follow_until_it_is_gone() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness.wait_phase("app", "ready").await;
    let socket = harness.socket.clone();

    let (ok, all, stderr) = forklet(&socket, &["logs", "app"]);
    assert!(ok, "{stderr}");
    assert!(all.contains("\"endpoint\":\"install\""), "{all}");
    let (_, last, _) = forklet(&socket, &["logs", "app", "--tail", "1"]);
    assert_eq!(last.lines().count(), 1, "{last}");
    assert!(all.ends_with(&last), "the last line of all: {last}");
    let (ok, _, stderr) = forklet(&socket, &["logs", "nope"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "forklet: Module default/nope not found");

    // Following: a line printed after the follow began comes through, and
    // the follow ends when the module is gone.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("--socket")
        .arg(&socket)
        .args(["logs", "app", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    harness.write(
        "app.yaml",
        &ModuleYaml {
            config: "{marker: after-follow}",
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let seen = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("a line after the follow began");
            if line.contains("after-follow") {
                return (line, lines);
            }
        }
    })
    .await
    .unwrap();
    assert!(seen.0.contains("\"endpoint\":\"install\""), "{}", seen.0);

    // Asleep, the runner stops; woken, the same runner starts again: the
    // follow goes on with it, and shows nothing twice.
    let module = |hibernated| {
        ModuleYaml {
            config: "{marker: after-follow}",
            hibernated,
            ..ModuleYaml::default()
        }
        .to_string()
    };
    harness.write("app.yaml", &module(true));
    harness.wait_phase("app", "sleeped").await;
    harness.write("app.yaml", &module(false));
    let lines = seen.1;
    let (before_resume, lines) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .expect("the resume, after the restart");
            if line.contains("\"endpoint\":\"resume\"") {
                return (before, lines);
            }
            before.push(line);
        }
    })
    .await
    .unwrap();
    assert!(
        !before_resume
            .iter()
            .any(|l| l.contains("after-follow") && l.contains("\"install\"")),
        "the install was shown once only: {before_resume:?}"
    );
    drop(lines);

    harness.remove("app.yaml");
    harness.wait_gone("app").await;
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = follow.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the follow did not end with the module"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
}
