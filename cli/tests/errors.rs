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
    let (ok, _, stderr) = forklet(&harness.socket, &["get", "workspaces"]);
    assert!(ok, "{stderr}");
}
