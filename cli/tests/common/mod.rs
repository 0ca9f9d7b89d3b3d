//! What the CLI tests share: running the real `forklet` binary.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use forkletd::testing::DEADLINE;

/// Runs `forklet --socket SOCKET ARGS...`: success, stdout, stderr.
#[allow(dead_code)]
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

/// Starts `forklet --socket SOCKET ARGS...` with its output piped, for
/// commands that follow (`-f`, `-w`, `wait`).
#[allow(dead_code)] // each test binary uses what it needs
pub fn spawn(socket: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run forklet")
}

/// Waits for a spawned command off the async runtime: success, stdout, stderr.
#[allow(dead_code)]
pub async fn finish(child: std::process::Child) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    })
    .await
    .unwrap()
}

/// The lines a spawned command prints on stdout, as they come.
#[allow(dead_code)]
pub fn stdout_lines(child: &mut std::process::Child) -> Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    lines
}

/// Reads `lines` (off the async runtime) until one is `wanted`, failing
/// the test after [`DEADLINE`] with `what`: that line, the lines before
/// it, and the lines to come.
#[allow(dead_code)]
pub async fn line_where(
    lines: Receiver<String>,
    what: &'static str,
    wanted: impl Fn(&str) -> bool + Send + 'static,
) -> (String, Vec<String>, Receiver<String>) {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + DEADLINE;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect(what);
            if wanted(&line) {
                return (line, before, lines);
            }
            before.push(line);
        }
    })
    .await
    .unwrap()
}

/// Runs `forklet ARGS...` with its standard output on a terminal (a pty of
/// util-linux `script`), the environment's colour variables replaced by
/// `env`: its stdout, or `None` where `script` is not util-linux's.
#[allow(dead_code)]
pub fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let util_linux = Command::new("script")
        .arg("-V")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("util-linux"));
    if !util_linux {
        eprintln!("skipping the terminal case: no util-linux `script`");
        return None;
    }
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_forklet"))
        .chain(args.iter().copied())
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    let out = script.output().expect("run script");
    assert!(
        out.status.success(),
        "forklet {args:?} on a terminal failed"
    );
    // A terminal ends lines with CR LF.
    Some(String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"))
}
