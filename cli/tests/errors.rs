//! What the CLI says when the daemon cannot be reached, drops a request,
//! or refuses one: each its own words, and the daemon unharmed.

mod common;

use common::forklet;

use forkletd::testing::{Harness, WORKSPACE};

#[test]
fn a_dropped_request_is_told_apart_from_no_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("forkletd.sock");
    let (ok, _, stderr) = forklet(&socket, &["get", "modules"]);
    assert!(!ok);
    assert!(
        stderr.starts_with("forklet: forkletd is not running at "),
        "{stderr}"
    );

    // Something listens, takes the request and hangs up.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let rude = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut stream, &mut buf);
    });
    let (ok, _, stderr) = forklet(&socket, &["get", "modules"]);
    rude.join().unwrap();
    assert!(!ok);
    assert!(
        stderr.starts_with("forklet: forkletd closed the connection without answering"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_duration_is_refused_and_the_daemon_goes_on() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness
        .wait_until("the workspace listed", || async {
            (!harness.workspaces().await.is_empty()).then_some(())
        })
        .await;
    let (ok, _, stderr) = forklet(
        &harness.socket,
        &["sleep", "dev", "--workspace", "--for", "9000000000000s"],
    );
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "forklet: forSeconds 9000000000000 is longer than 316224000 (ten years)"
    );
    let (ok, _, stderr) = forklet(
        &harness.socket,
        &[
            "sleep",
            "dev",
            "--workspace",
            "--until",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("is more than 316224000 seconds (ten years) away"),
        "{stderr}"
    );
    let (ok, _, stderr) = forklet(&harness.socket, &["get", "workspaces"]);
    assert!(ok, "{stderr}");
}

#[test]
fn names_that_cannot_name_an_object_are_refused_in_the_users_words() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("forkletd.sock");
    for args in [
        &["get", "module", "../x"][..],
        &["sleep", "../x"],
        &["delete", "../x", "--force"],
        &["retry", "app", "-n", "Team"],
    ] {
        let (ok, _, stderr) = forklet(&socket, args);
        assert!(!ok);
        assert!(
            stderr.starts_with("forklet: name: \"../x\" is not a DNS-1123 subdomain")
                || stderr.starts_with("forklet: namespace: \"Team\" is not a DNS-1123 label"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws.yaml");
    std::fs::write(&file, WORKSPACE).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(["validate", "-o", "json"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the CLI writes: a `| head -c0`.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).is_empty(), "{out:?}");
    assert_ne!(out.status.code(), Some(101), "no panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_of_files_that_name_nothing_are_listed_too() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let socket = harness.socket.clone();
    let (ok, stdout, _) = forklet(&socket, &["get", "problems"]);
    assert!(ok);
    assert_eq!(stdout, "no manifest problems\n");
    harness.write("broken.yaml", "apiVersion: [broken");
    harness.write(
        "named.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: Dev_1}\n",
    );
    let listed = harness
        .wait_until("both problems listed", || async {
            let (_, stdout, _) = forklet(&socket, &["get", "problems"]);
            (stdout.lines().count() == 2).then_some(stdout)
        })
        .await;
    assert!(
        listed.contains("broken.yaml: document 1: invalid YAML"),
        "{listed}"
    );
    assert!(
        listed.contains("named.yaml: document 1: Workspace \"Dev_1\": metadata.name: "),
        "{listed}"
    );
    let (ok, _, stderr) = forklet(&socket, &["get", "modules"]);
    assert!(ok);
    assert_eq!(
        stderr.trim(),
        "forklet: 2 manifest problem(s) name no module or workspace: see `forklet get problems`"
    );
}
