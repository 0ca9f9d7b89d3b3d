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
    let (ok, _, stderr) = forklet(&harness.socket, &["describe", "module", "nope"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "forklet: Module default/nope not found");
}
