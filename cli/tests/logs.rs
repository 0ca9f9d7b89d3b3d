//! `forklet logs`: a module's output through the daemon, as `docker logs`
//! shows a container's.

mod common;

use common::{finish, forklet, line_where, spawn, stdout_lines};
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
    let mut follow = spawn(&socket, &["logs", "app", "-f"]);
    let lines = stdout_lines(&mut follow);
    harness.write(
        "app.yaml",
        &ModuleYaml {
            config: "{marker: after-follow}",
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let seen = line_where(lines, "a line after the follow began", |l| {
        l.contains("after-follow")
    })
    .await;
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
    let lines = seen.2;
    let (_, before_resume, lines) = line_where(lines, "the resume, after the restart", |l| {
        l.contains("\"endpoint\":\"resume\"")
    })
    .await;
    assert!(
        !before_resume
            .iter()
            .any(|l| l.contains("after-follow") && l.contains("\"install\"")),
        "the install was shown once only: {before_resume:?}"
    );
    drop(lines);

    harness.remove("app.yaml");
    harness.wait_gone("app").await;
    let (ended, _, _) = tokio::time::timeout(DEADLINE, finish(follow))
        .await
        .expect("the follow did not end with the module");
    assert!(ended, "the follow ended in error");
}
