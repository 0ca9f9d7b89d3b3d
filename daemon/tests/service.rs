//! forkletd under systemd (`Type=notify`): what the service manager hears,
//! and when.

use std::ffi::OsStr;
use std::time::Duration;

use forkletd::testing::{DEADLINE, Harness, ModuleYaml, WORKSPACE};
use tokio::net::UnixDatagram;

/// The next message on `socket`, one `KEY=VALUE` per line.
async fn next(socket: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(DEADLINE, socket.recv(&mut buf))
        .await
        .expect("a message from forkletd")
        .unwrap();
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_when_the_socket_answers_then_status_beats_and_stopping() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness.wait_phase("app", "ready").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let watchdog = Duration::from_millis(400).as_micros().to_string();
    harness
        .spawn_binary_with(
            env!("CARGO_BIN_EXE_forkletd"),
            None,
            &[
                ("NOTIFY_SOCKET", path.as_os_str()),
                ("WATCHDOG_USEC", OsStr::new(&watchdog)),
            ],
        )
        .await;

    let first = next(&socket).await;
    assert_eq!(first, "READY=1\n", "ready comes first");
    // Ready means the control socket answers at once, no retry needed.
    let answered: Vec<serde_json::Value> =
        harness.api("/v1/modules").await.expect("the API answers");
    assert_eq!(answered.len(), 1);

    // The reconciler beats, and says how the modules stand.
    let (mut beats, mut status) = (0, None);
    while beats < 2 || status.is_none() {
        let message = next(&socket).await;
        match message.trim_end() {
            "WATCHDOG=1" => beats += 1,
            line if line.starts_with("STATUS=") => status = Some(line.to_owned()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        status.as_deref(),
        Some("STATUS=1 module: 1 ready, 0 asleep, 0 failed")
    );

    let pid = harness.pid().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    loop {
        let message = next(&socket).await;
        if message == "STOPPING=1\n" {
            break;
        }
        assert!(
            message.starts_with("WATCHDOG=") || message.starts_with("STATUS="),
            "{message:?}"
        );
    }
    let status = harness.wait_exit().await;
    assert!(status.success(), "{status:?}");
}
