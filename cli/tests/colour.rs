//! Colour only where a person reads it: on a terminal, without `NO_COLOR`.
//! `forklet validate` needs no daemon, so it shows the rule on any machine.

mod common;

use std::path::Path;
use std::process::Command;

use common::on_terminal;

fn workspace() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed/dev-workspace.yaml")
        .display()
        .to_string()
}

/// `forklet ARGS...` with stdout piped and the colour variables set to `env`.
fn piped(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .output()
        .expect("run forklet");
    assert!(out.status.success(), "forklet {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const ESC: &str = "\x1b[";

#[test]
fn a_pipe_gets_no_colour() {
    let text = piped(&["validate", workspace().as_str()], &[]);
    assert_eq!(text, "1 file, 1 object: valid\n");
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let file = workspace();
    let args = ["validate", file.as_str()];
    let Some(text) = on_terminal(&args, &[]) else {
        return;
    };
    assert_eq!(text, "1 file, 1 object: \x1b[32mvalid\x1b[0m\n");
    let text = on_terminal(&args, &[("NO_COLOR", "1")]).unwrap();
    assert_eq!(text, "1 file, 1 object: valid\n");
    // no-color.org: an empty NO_COLOR is as if it were not set.
    let text = on_terminal(&args, &[("NO_COLOR", "")]).unwrap();
    assert!(text.contains(ESC), "{text:?}");
    let text = on_terminal(&args, &[("TERM", "dumb")]).unwrap();
    assert!(!text.contains(ESC), "{text:?}");
}

#[test]
fn clicolor_force_colours_a_pipe_and_no_color_still_wins() {
    let file = workspace();
    let args = ["validate", file.as_str()];
    assert!(piped(&args, &[("CLICOLOR_FORCE", "1")]).contains(ESC));
    assert!(!piped(&args, &[("CLICOLOR_FORCE", "0")]).contains(ESC));
    let both = piped(&args, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!both.contains(ESC), "{both:?}");
}

#[test]
fn json_and_yaml_are_never_coloured() {
    let file = workspace();
    for format in ["json", "yaml"] {
        let args = ["validate", file.as_str(), "-o", format];
        let forced = piped(&args, &[("CLICOLOR_FORCE", "1")]);
        assert!(!forced.contains(ESC), "-o {format}: {forced}");
        if let Some(text) = on_terminal(&args, &[]) {
            assert!(!text.contains(ESC), "-o {format}: {text}");
        }
    }
}
