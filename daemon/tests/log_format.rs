//! `--log-format`: JSON lines for a log shipper, and the journal natively,
//! chosen by `auto` when stderr is the journal stream, with fields kept.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use forkletd::testing::{DEADLINE, Harness, ModuleYaml, WORKSPACE};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_the_level_the_message_and_the_module() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness
        .spawn_binary_with(
            env!("CARGO_BIN_EXE_forkletd"),
            None,
            &[("FORKLET_LOG_FORMAT", OsStr::new("json"))],
        )
        .await;
    harness.wait_api().await;
    harness.wait_phase("app", "ready").await;
    let log = harness.daemon_log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let ready = lines
        .iter()
        .find(|l| l["message"] == "forkletd ready")
        .unwrap_or_else(|| panic!("no ready line in\n{log}"));
    assert_eq!(ready["level"], "INFO");
    assert_eq!(ready["socket"], harness.socket.display().to_string());
    assert!(
        lines
            .iter()
            .any(|l| l["module"] == "default/app" && l["phase"] == "ready"),
        "the module and its phase are fields:\n{log}"
    );
}

/// A stand-in journal: the datagram socket `/run/systemd/journal/socket`,
/// in a mount namespace of forkletd's own (root and `unshare` needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_writes_to_the_journal_when_stderr_is_the_journal_stream() {
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no private mount namespace here (unshare --mount, as root)");
        return;
    }
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    let journal = tempfile::tempdir().unwrap();
    let socket = tokio::net::UnixDatagram::bind(journal.path().join("socket")).unwrap();
    let wrapper = journal.path().join("in-namespace.sh");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c \
         'mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal && \
          mount --bind \"$JOURNAL_DIR\" /run/systemd/journal && exec \"$FORKLETD\" \"$@\"' sh \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // What systemd sets for a unit whose stderr is the journal: here the
    // daemon's log file stands for the stream.
    let log = harness.state.path().join("forkletd.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    harness
        .spawn_binary_with(
            wrapper.to_str().unwrap(),
            None,
            &[
                ("JOURNAL_DIR", journal.path().as_os_str()),
                ("FORKLETD", OsStr::new(env!("CARGO_BIN_EXE_forkletd"))),
                ("JOURNAL_STREAM", OsStr::new(&stream)),
                ("FORKLET_LOG_FORMAT", OsStr::new("auto")),
            ],
        )
        .await;

    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; 64 << 10];
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let len = tokio::time::timeout(left, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no journal entry; stderr:\n{}", harness.daemon_log()))
            .unwrap();
        let entry = fields(&buf[..len]);
        if entry.get("MESSAGE").map(String::as_str) == Some("forkletd ready") {
            break entry;
        }
    };
    let field = |name: &str| ready.get(name).cloned();
    assert_eq!(
        field("PRIORITY").as_deref(),
        Some("5"),
        "info, as tracing-journald maps it"
    );
    assert_eq!(field("SYSLOG_IDENTIFIER").as_deref(), Some("forkletd"));
    assert_eq!(
        field("SOCKET"),
        Some(harness.socket.display().to_string()),
        "fields keep their names: {ready:?}"
    );
    assert_eq!(harness.daemon_log(), "", "nothing went to stderr as text");
}

/// A journal datagram's fields: `KEY=VALUE\n`, or `KEY\n`, a 64-bit
/// little-endian length, the value and `\n` (the journal's native protocol).
fn fields(mut data: &[u8]) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    while let Some(end) = data.iter().position(|b| *b == b'\n' || *b == b'=') {
        let key = String::from_utf8_lossy(&data[..end]).into_owned();
        let value;
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let stop = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            value = &rest[..stop];
            data = &rest[(stop + 1).min(rest.len())..];
        } else {
            let size = data.get(end + 1..end + 9).expect("a length");
            let len = u64::from_le_bytes(size.try_into().unwrap()) as usize;
            value = data.get(end + 9..end + 9 + len).expect("the value");
            data = data.get(end + 10 + len..).unwrap_or_default();
        }
        out.insert(key, String::from_utf8_lossy(value).into_owned());
    }
    out
}
