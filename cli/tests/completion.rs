//! `forklet completion bash|zsh|fish`: scripts made from the same
//! definitions as `--help`, which each shell can load.

use std::io::Write;
use std::process::{Command, Stdio};

/// `forklet completion SHELL`: exit status and stdout.
fn completion(shell: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(["completion", shell])
        .output()
        .expect("run forklet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Whether `shell -n` (parse, run nothing) accepts `script`; `None` when
/// that shell is not installed.
fn parses(shell: &str, script: &str) -> Option<bool> {
    let mut child = match Command::new(shell)
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => panic!("run {shell}: {err}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("{shell} -n: {}", String::from_utf8_lossy(&out.stderr));
    }
    Some(out.status.success())
}

#[test]
fn each_shell_gets_a_script_that_names_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script) = completion(shell);
        assert!(ok, "forklet completion {shell} failed");
        assert!(!script.trim().is_empty(), "{shell}: no script");
        for subcommand in ["get", "describe", "logs", "events", "completion", "man"] {
            assert!(
                script.contains(subcommand),
                "{shell}: {subcommand} is not completed"
            );
        }
    }
}

#[test]
fn the_bash_script_is_valid_bash() {
    let (_, script) = completion("bash");
    assert_eq!(
        parses("bash", &script),
        Some(true),
        "bash -n refuses it (or bash is missing)"
    );
    // The function that `complete -F` names is defined by the script.
    assert!(script.contains("complete -F _forklet"), "{script}");
}

#[test]
fn the_zsh_and_fish_scripts_parse_where_those_shells_are_installed() {
    for shell in ["zsh", "fish"] {
        let (_, script) = completion(shell);
        match parses(shell, &script) {
            Some(ok) => assert!(ok, "{shell} -n refuses the script"),
            None => eprintln!("skipping {shell}: not installed"),
        }
    }
}

#[test]
fn the_output_formats_of_get_are_offered() {
    let (_, script) = completion("bash");
    assert!(
        script.contains("table wide name json yaml"),
        "get -o's values are not completed"
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
