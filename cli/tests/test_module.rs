//! `forklet test-module`: the bundled example modules pass, and each fault
//! of the misbehaving module fails the check it breaks.

use std::process::Command;

use forkletd::testing::{
    HELLO_IMAGE, MISBEHAVE_IMAGE, PYTHON_IMAGE, build_python_image, example_images,
};
use serde_json::Value;

/// `forklet test-module ARGS... -o json`: exit status and the report.
fn test_module(args: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("test-module")
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("run forklet");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{args:?}: no report:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// The checks' names and verdicts, in order.
fn verdicts(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Whether the report's runner container is still there.
fn left_behind(report: &Value) -> bool {
    let name = report["runner"]
        .as_str()
        .expect("the report names its runner");
    Command::new("docker")
        .args(["container", "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_modules_pass_every_required_check() {
    if !example_images().await {
        return;
    }
    build_python_image();
    let (code, report) = test_module(&[HELLO_IMAGE, "--config", "greeting=hi", "--timeout", "20s"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(!left_behind(&report), "the runner is removed");
    let names: Vec<String> = verdicts(&report).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "start",
            "health",
            "health-body",
            "install",
            "install-again",
            "sleep",
            "resume",
            "uninstall",
            "sigterm",
            "user"
        ]
    );
    assert!(report["image_bytes"].as_i64().unwrap() > 0);
    let checks = verdicts(&report);
    assert!(
        checks.contains(&("health-body".into(), "pass".into())),
        "{checks:?}"
    );
    // FROM scratch, no USER: root, which is only a warning.
    assert!(
        checks.contains(&("user".into(), "warn".into())),
        "{checks:?}"
    );

    // As modules are published: Python as PID 1, ignoring SIGTERM by
    // itself (forklet's init stops it), a user of its own, slow to start.
    let (code, report) = test_module(&[
        PYTHON_IMAGE,
        "--config",
        "startDelaySeconds=1",
        "--timeout",
        "20s",
    ]);
    assert_eq!(code, Some(0), "{report:#}");
    let checks = verdicts(&report);
    assert!(
        checks.contains(&("sigterm".into(), "pass".into())),
        "{checks:?}"
    );
    assert!(
        checks.contains(&("user".into(), "pass".into())),
        "{checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_fails_the_check_it_breaks() {
    if !example_images().await {
        return;
    }
    let faults: [(&[&str], &str, &str); 8] = [
        (&["health=never"], "health", "healthy"),
        (&["install=hang"], "install", "3s"),
        (&["install=\"500\""], "install", "500"),
        (
            &["install=\"400\""],
            "install",
            "rejected: this module refuses the request",
        ),
        (&["install=garbage"], "install", "not a JSON object"),
        (&["install=exit"], "install", "POST /install"),
        (&["sleep=\"500\""], "sleep", "500"),
        (&["sigterm=ignore"], "sigterm", "ignores SIGTERM"),
    ];
    // At once: each its own runner.
    let runs: Vec<_> = faults
        .iter()
        .map(|(config, _, _)| {
            let mut args = vec![MISBEHAVE_IMAGE, "--timeout", "3s"];
            for pair in *config {
                args.extend(["--config", pair]);
            }
            let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                test_module(&args)
            })
        })
        .collect();
    for ((config, check, words), run) in faults.iter().zip(runs) {
        let (code, report) = run.join().unwrap();
        assert_eq!(code, Some(1), "{config:?}: {report:#}");
        assert_eq!(report["passed"], false);
        assert!(!left_behind(&report), "{config:?}: the runner is removed");
        let failed: Vec<&Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["verdict"] == "fail")
            .collect();
        assert_eq!(failed.len(), 1, "{config:?}: one check fails: {report:#}");
        assert_eq!(failed[0]["name"], *check, "{config:?}");
        let detail = failed[0]["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{config:?}: {detail}");
    }
}

#[test]
fn a_config_the_definition_refuses_is_told_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let definition = dir.path().join("definition.yaml");
    std::fs::write(
        &definition,
        "kind: Custom\nmetadata: {name: app, version: 1.0.0, supportedOperatorVersion: '*'}\n\
         config:\n- {type: integer, name: replicas, alias: replicas, spec: {required: true, min: 1, max: 3}}\n\
         spec: {image: none:here}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(["test-module", "none:here", "--definition"])
        .arg(&definition)
        .args(["--config", "replicas=9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config replicas:"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args(["test-module", "none:here", "--permission", "workspace"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a workspace module needs a kubeconfig"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_call_still_removes_the_runner() {
    if !example_images().await {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .args([
            "test-module",
            MISBEHAVE_IMAGE,
            "--config",
            "install=hang",
            "--timeout",
            "60s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once the call that hangs is under way.
    let stderr = child.stderr.take().unwrap();
    let (seen, rest) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok);
        let seen = lines.by_ref().any(|line| line.contains("POST /install"));
        // Read on: a closed stderr must not be what ends the command.
        (seen, std::thread::spawn(move || lines.collect::<Vec<_>>()))
    })
    .await
    .unwrap();
    assert!(seen, "the install call began");
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "as shells report Ctrl-C");
    let stderr = rest.join().unwrap().join("\n");
    let name = stderr
        .lines()
        .find_map(|line| line.strip_prefix("forklet: interrupted; runner "))
        .and_then(|rest| rest.strip_suffix(" removed"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let inspect = Command::new("docker")
        .args(["container", "inspect", name])
        .output()
        .unwrap();
    assert!(!inspect.status.success(), "{name} is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_module_finds_forklet_s_api_and_a_refusal_shows_its_reason() {
    if !example_images().await {
        return;
    }
    let (code, report) = test_module(&[
        HELLO_IMAGE,
        "--permission",
        "controller",
        "--config",
        "probeControlApi=true",
        "--timeout",
        "20s",
    ]);
    assert_eq!(code, Some(0), "{report:#}");
    // The module asked the API mounted at /forklet, as under forkletd.
    assert_eq!(
        report["metadata"]["controlApi"], "HTTP/1.1 200 OK",
        "{report:#}"
    );
    assert!(!left_behind(&report));

    // A module that refuses: its 400 and its words, in the failure.
    let (code, report) = test_module(&[
        HELLO_IMAGE,
        "--config",
        "reject=replicas must be at most 3",
        "--timeout",
        "20s",
    ]);
    assert_eq!(code, Some(1));
    let install = &report["checks"][3];
    assert_eq!(
        (&install["name"], &install["verdict"]),
        (&"install".into(), &"fail".into())
    );
    let detail = install["detail"].as_str().unwrap();
    assert!(
        detail.contains("400") && detail.contains("replicas must be at most 3"),
        "{detail}"
    );
}
