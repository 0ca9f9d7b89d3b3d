//! What the CLI tests share: running the real `forklet` binary.

use std::path::Path;
use std::process::Command;

/// Runs `forklet --socket SOCKET ARGS...`: success, stdout, stderr.
pub fn forklet(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run forklet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
