//! Definitions from a URL and from a file beside the manifests.

use forklet_state::api::ModulePhase;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use forkletd::testing::{HELLO_IMAGE, Harness, WORKSPACE};
use serde_json::json;

fn definition(default_greeting: &str) -> String {
    format!(
        "kind: Custom\nmetadata: {{name: hello, version: 1.0.0, supportedOperatorVersion: '>= 0.0.0, < 1.0.0'}}\nconfig:\n  - {{type: string, name: greeting, alias: greeting, spec: {{default: '{default_greeting}'}}}}\nspec: {{image: '{HELLO_IMAGE}'}}\n"
    )
}

fn module(name: &str, source: &str) -> String {
    format!(
        "apiVersion: batch.forkspacer.com/v1\nkind: Module\nmetadata: {{name: {name}}}\nspec:\n  workspace: {{name: dev}}\n  source: {source}\n"
    )
}

/// Serves the hello definition at /hello.yaml, counting requests; 404 elsewhere.
async fn serve_definitions() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            "/hello.yaml",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { definition("from the web") }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such definition") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_definition_is_fetched_once_and_kept() {
    let Some(mut harness) = Harness::start().await else {
        return;
    };
    let (base, hits, server) = serve_definitions().await;
    harness.write("workspace.yaml", WORKSPACE);
    harness.write(
        "web.yaml",
        &module("web", &format!("{{httpURL: '{base}/hello.yaml'}}")),
    );
    let web = harness.wait_phase("web", "ready").await;
    assert_eq!(
        web.config,
        json!({"greeting": "from the web"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // With the server gone, a restart and a config edit need no network.
    server.abort();
    harness.restart().await;
    harness.write(
        "web.yaml",
        &module("web", &format!("{{httpURL: '{base}/hello.yaml'}}"))
            .replace("source:", "config: {greeting: edited}\n  source:"),
    );
    let edited = harness
        .wait_until("the edit installed", || async {
            harness
                .module("web")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.config["greeting"] == "edited")
        })
        .await;
    assert_eq!(edited.metadata["installs"], 2);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "never fetched again");

    // A URL that answers 404 is an error on that module alone.
    let (base, _, _server) = serve_definitions().await;
    harness.write(
        "missing.yaml",
        &module("missing", &format!("{{httpURL: '{base}/nope.yaml'}}")),
    );
    let missing = harness.wait_phase("missing", "failed").await;
    assert!(
        missing.message.ends_with(&format!(
            "spec.source.httpURL: fetching {base}/nope.yaml: answered 404 Not Found (expected 200 OK)"
        )),
        "{}",
        missing.message
    );
    assert_eq!(
        harness.module("web").await.unwrap().phase,
        ModulePhase::Ready
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_file_in_a_subdirectory_is_watched() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let defs = harness.manifests.path().join("definitions");
    std::fs::create_dir(&defs).unwrap();
    std::fs::write(defs.join("hello.yaml"), definition("from a file")).unwrap();
    harness.write("workspace.yaml", WORKSPACE);
    harness.write(
        "local.yaml",
        &module("local", "{file: definitions/hello.yaml}"),
    );
    let local = harness.wait_phase("local", "ready").await;
    assert_eq!(local.config["greeting"], "from a file");

    // Editing only the definition file installs again with the new default.
    std::fs::write(defs.join("hello.yaml"), definition("edited file")).unwrap();
    let edited = harness
        .wait_until("the edited definition installed", || async {
            harness
                .module("local")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.config["greeting"] == "edited file")
        })
        .await;
    assert_eq!(edited.metadata["installs"], 2);

    // A path that leaves the manifests directory is refused, naming the field.
    harness.write("escape.yaml", &module("escape", "{file: ../../etc/passwd}"));
    let escape = harness.wait_phase("escape", "failed").await;
    assert!(
        escape
            .message
            .contains("spec.source.file: ../../etc/passwd is outside the manifests directory"),
        "{}",
        escape.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_refresh_fetches_the_definition_again() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let version = Arc::new(AtomicUsize::new(1));
    let served = version.clone();
    let app = Router::new().route(
        "/hello.yaml",
        get(move || {
            let v = served.load(Ordering::SeqCst);
            async move { definition(&format!("version {v}")) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hello.yaml", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    harness.write("workspace.yaml", WORKSPACE);
    harness.write("web.yaml", &module("web", &format!("{{httpURL: '{url}'}}")));
    assert_eq!(
        harness.wait_phase("web", "ready").await.config["greeting"],
        "version 1"
    );

    version.store(2, Ordering::SeqCst);
    let (status, _) = harness
        .api_post("/v1/definitions/refresh", &json!(null))
        .await;
    assert_eq!(status, 202);
    let refreshed = harness
        .wait_until("the refreshed definition installed", || async {
            harness
                .module("web")
                .await
                .filter(|m| m.phase == ModulePhase::Ready && m.config["greeting"] == "version 2")
        })
        .await;
    assert_eq!(refreshed.metadata["installs"], 2);
}
