//! `forklet describe`: one object in full, as `kubectl describe` shows it.

mod common;

use common::forklet;
use forkletd::testing::{Harness, ModuleYaml, WORKSPACE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_names_the_runner_the_definition_and_the_last_event() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write(
        "app.yaml",
        &ModuleYaml {
            config: "{greeting: hi}",
            ..ModuleYaml::default()
        }
        .to_string(),
    );
    let ready = harness.wait_phase("app", "ready").await;
    let (ok, text, stderr) = forklet(&harness.socket, &["describe", "module", "app"]);
    assert!(ok, "{stderr}");
    let line = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
            .to_owned()
    };
    assert!(line("Name:").ends_with(" app"), "{text}");
    assert!(line("Definition:").ends_with(" app 1.0.0"), "{text}");
    assert!(line("Phase:").ends_with(" ready"), "{text}");
    let container = ready.container_id.unwrap();
    assert!(line("Container:").ends_with(&container), "{text}");
    assert!(line("Network:").ends_with(" bridge"), "{text}");
    // Read from the engine: the name, where forkletd calls it, since when.
    let runner_name = text
        .lines()
        .skip_while(|l| !l.starts_with("Runner:"))
        .find(|l| l.trim_start().starts_with("Name:"))
        .unwrap_or_else(|| panic!("no runner name in:\n{text}"));
    assert!(runner_name.contains(" forklet-"), "{text}");
    assert!(line("Endpoint:").contains(" 127.0.0.1:"), "{text}");
    assert!(line("State:").ends_with(" running"), "{text}");
    assert!(line("Started:").ends_with(" ago)"), "{text}");
    assert!(line("greeting:").ends_with(" hi"), "{text}");
    let last_event = text.lines().last().unwrap();
    assert!(
        last_event.contains("Installed"),
        "the last event closes it:\n{text}"
    );

    let (ok, text, _) = forklet(&harness.socket, &["describe", "workspace", "dev"]);
    assert!(ok);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Modules:") && l.ends_with(" 1")),
        "{text}"
    );
    // A workspace's own history: the override set on it by hand.
    let (ok, _, stderr) = forklet(
        &harness.socket,
        &["sleep", "dev", "--workspace", "--for", "1h"],
    );
    assert!(ok, "{stderr}");
    let (ok, text, _) = forklet(&harness.socket, &["describe", "workspace", "dev"]);
    assert!(ok);
    let last_event = text.lines().last().unwrap();
    assert!(
        last_event.contains("OverrideSet") && last_event.contains("sleep by hand until"),
        "{text}"
    );
    let (ok, text, _) = forklet(&harness.socket, &["events", "--for", "workspace/dev"]);
    assert!(ok);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        rows.iter()
            .all(|row| row.contains(" workspace/default/dev ")),
        "only the workspace's own:\n{text}"
    );
    let reasons: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.split_whitespace().nth(1))
        .collect();
    assert_eq!(reasons, ["Defined", "OverrideSet"], "{text}");
    let (ok, _, stderr) = forklet(&harness.socket, &["describe", "module", "nope"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "forklet: Module default/nope not found");
}
