//! Private images: pulled from a real registry with htpasswd auth on
//! loopback, with the credentials of the module's imagePullSecrets.

use forklet_state::api::ModulePhase;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    PushImageOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use forkletd::testing::{HELLO_IMAGE, Harness, ModuleYaml, logs};
use futures_util::StreamExt;
use serde_json::json;

const USER: &str = "forklet";
const PASSWORD: &str = "s3cret-registry-Password-9f2c";

/// Debian's docker-registry on 127.0.0.1, htpasswd auth; killed on drop.
struct Registry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// `None` (skip) where the registry is not installed, unless CI requires it.
    fn start() -> Option<Self> {
        if !Path::new("/usr/bin/docker-registry").exists()
            || !Path::new("/usr/bin/htpasswd").exists()
        {
            assert!(
                std::env::var("FORKLET_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "FORKLET_REQUIRE_DOCKER=1 but docker-registry or htpasswd is missing (apt-get install docker-registry apache2-utils)"
            );
            eprintln!("skipping: docker-registry or htpasswd (apache2-utils) not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .unwrap();
        assert!(htpasswd.status.success());
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {root}}}\nhttp:\n  addr: {address}\nauth:\n  htpasswd: {{realm: forklet-test, path: {root}/htpasswd}}\n",
            root = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some(Self {
            child,
            address,
            _dir: dir,
        })
    }

    async fn wait_ready(&self) {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(&self.address).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the registry never listened on {}", self.address);
    }
}

fn module(name: &str, image: &str, secret: &str) -> String {
    let spec = format!("imagePullSecrets: [{secret}]");
    ModuleYaml {
        name,
        image,
        spec: &spec,
        ..ModuleYaml::default()
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_images_are_pulled_with_their_secret_and_never_leak_it() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let Some(harness) = Harness::start().await else {
        return;
    };
    registry.wait_ready().await;
    let repository = format!("{}/forklet/hello-{}", registry.address, std::process::id());
    let credentials = DockerCredentials {
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
        serveraddress: Some(registry.address.clone()),
        ..Default::default()
    };

    // Push the hello image as :v1 and :latest, then drop the local tags.
    for tag in ["v1", "latest"] {
        let options = TagImageOptionsBuilder::new()
            .repo(&repository)
            .tag(tag)
            .build();
        harness
            .docker
            .tag_image(HELLO_IMAGE, Some(options))
            .await
            .unwrap();
        let mut push = harness.docker.push_image(
            &repository,
            Some(PushImageOptionsBuilder::new().tag(tag).build()),
            Some(credentials.clone()),
        );
        while let Some(step) = push.next().await {
            let step = step.expect("push");
            assert!(step.error_detail.is_none(), "push failed: {step:?}");
        }
        let untag = RemoveImageOptionsBuilder::default().noprune(true).build();
        harness
            .docker
            .remove_image(&format!("{repository}:{tag}"), Some(untag), None)
            .await
            .unwrap();
    }

    for (name, password) in [("good", PASSWORD), ("wrong", "not-the-password")] {
        let body = json!({"name": name, "type": "docker-registry", "server": registry.address, "username": USER, "password": password});
        let (status, answer) = harness.api_post("/v1/secrets", &body).await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(
            answer,
            json!({"name": name, "namespace": "default", "type": "docker-registry"})
        );
    }
    let again = json!({"name": "good", "type": "docker-registry", "server": "x", "username": "u", "password": "p"});
    assert_eq!(
        harness.api_post("/v1/secrets", &again).await,
        (
            reqwest::StatusCode::CONFLICT,
            json!({
                "type": "urn:forklet:problem:secret_exists",
                "title": "Secret exists",
                "status": 409,
                "detail": "secret good already exists",
                "code": "secret_exists",
                "error": "secret good already exists",
            })
        )
    );

    harness.write(
        "workspace.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n",
    );
    harness.write(
        "private.yaml",
        &module("private", &format!("{repository}:v1"), "good"),
    );
    let private = harness.wait_phase("private", "ready").await;
    assert!(private.container_id.is_some());

    // :latest is always pulled, so the wrong password meets the registry.
    harness.write(
        "wrong.yaml",
        &module("wrong", &format!("{repository}:latest"), "wrong"),
    );
    let wrong = harness.wait_phase("wrong", "failed").await;
    assert!(
        wrong.message.starts_with(&format!(
            "install failed: image {repository}:latest is not present and could not be pulled: "
        )),
        "{}",
        wrong.message
    );
    assert!(
        wrong.message.contains("unauthorized") || wrong.message.contains("authentication required"),
        "{}",
        wrong.message
    );

    harness.write(
        "absent.yaml",
        &module("absent", &format!("{repository}:v1"), "nowhere"),
    );
    let absent = harness.wait_phase("absent", "failed").await;
    assert!(
        absent
            .message
            .starts_with("install failed: image pull secret nowhere does not exist"),
        "{}",
        absent.message
    );

    // The password is in no answer of the API and in no log line.
    let said = harness.everything_the_api_says().await;
    assert!(
        said.contains("\"good\"") && said.contains(&registry.address),
        "the check reads real answers"
    );
    assert!(!said.contains(PASSWORD), "the API answered the password");
    let logged = logs();
    assert!(
        logged.contains("pulling image"),
        "the check reads real logs"
    );
    assert!(!logged.contains(PASSWORD), "a log line holds the password");

    // Leave no image names behind (the runner keeps the image itself until
    // the harness removes it).
    let untag = RemoveImageOptionsBuilder::default()
        .force(true)
        .noprune(true)
        .build();
    let _ = harness
        .docker
        .remove_image(&format!("{repository}:v1"), Some(untag), None)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_makes_no_progress_fails_with_the_reason() {
    let Some(harness) = Harness::start_with(|c| c.pull_stall = Duration::from_secs(1)).await else {
        return;
    };
    // A "registry" on loopback that takes connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in silent.incoming().take(4) {
            open.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    harness.write(
        "workspace.yaml",
        "apiVersion: batch.forkspacer.com/v1\nkind: Workspace\nmetadata: {name: dev}\n",
    );
    let image = format!("127.0.0.1:{port}/stalled/module:1");
    let module = ModuleYaml {
        image: &image,
        ..ModuleYaml::default()
    };
    harness.write("app.yaml", &module.to_string());
    let failed = harness
        .wait_until("the stalled pull given up", || async {
            harness.module("app").await.filter(|m| {
                m.phase == ModulePhase::Failed && m.message.contains("no progress for 1 s")
            })
        })
        .await;
    assert!(
        failed.message.starts_with(&format!(
            "install failed: image {image} is not present and could not be pulled"
        )),
        "{}",
        failed.message
    );
    drop(held);
}
