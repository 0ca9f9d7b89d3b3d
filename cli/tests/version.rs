//! `forklet version`: both sides, and a clear word when there is no daemon.

mod common;

use common::forklet;
use forkletd::testing::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_the_cli_and_the_daemon() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let v = env!("CARGO_PKG_VERSION");
    let (ok, stdout, _) = forklet(&harness.socket, &["version"]);
    assert!(ok);
    assert_eq!(
        stdout,
        format!("forklet {v} (API v1)\nforkletd {v} (API v1)\n")
    );

    let nowhere = harness.state.path().join("no.sock");
    let (ok, stdout, _) = forklet(&nowhere, &["version"]);
    assert!(!ok, "no daemon: not fine");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("forklet {v} (API v1)"));
    assert!(
        lines[1].starts_with("forkletd: forkletd is not running"),
        "{stdout}"
    );
}
