//! The control API's contract: its OpenAPI document says what the router
//! serves, and every error, axum's own included, is problem details.

use forkletd::testing::{Harness, ModuleYaml, WORKSPACE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn client(harness: &Harness) -> reqwest::Client {
    reqwest::Client::builder()
        .unix_socket(harness.socket.as_path())
        .build()
        .unwrap()
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = http.request(method, format!("http://forkletd{path}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_answers_only_what_it_documents() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let http = client(&harness);
    let (status, content_type, document) = call(&http, Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (template, item) in paths {
        // Objects no one has: nothing is changed by asking.
        let path = template
            .replace("{namespace}", "default")
            .replace("{name}", "nobody-here");
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method == Method::POST).then_some("{}");
            let (status, content_type, answer) = call(&http, method.clone(), &path, body).await;
            let documented: Vec<&String> = operation["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {template} documents no responses"))
                .keys()
                .collect();
            assert!(
                documented.contains(&&status.as_u16().to_string()),
                "{method} {path} answered {status} ({answer}), which is not among {documented:?}"
            );
            assert_ne!(answer["code"], "no_route", "{method} {path} is not served");
            if !status.is_success() {
                assert_eq!(
                    content_type.as_deref(),
                    Some("application/problem+json"),
                    "{method} {path}"
                );
            }
            operations += 1;
        }
    }
    // Every operation of `api::routes`: one that lost its annotation, and so
    // its route, shows here.
    assert_eq!(operations, 22, "operations documented");
    for schema in [
        "ModuleView",
        "ModulePhase",
        "EventReason",
        "ProblemDetails",
        "ErrorCode",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema} is described"
        );
    }
    let codes = &document["components"]["schemas"]["ErrorCode"];
    assert!(
        codes.to_string().contains("secret_in_use"),
        "the codes are listed: {codes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_axum_writes_itself_are_problem_details_too() {
    let Some(harness) = Harness::start().await else {
        return;
    };
    let http = client(&harness);
    let problem = |status: u16, code: &str| (StatusCode::from_u16(status).unwrap(), json!(code));
    let cases = [
        (
            Method::GET,
            "/v1/nothing-here",
            None,
            problem(404, "no_route"),
        ),
        (
            Method::DELETE,
            "/v1/modules",
            None,
            problem(405, "no_route"),
        ),
        (
            Method::POST,
            "/v1/secrets",
            Some("{not json"),
            problem(400, "invalid_request"),
        ),
        (
            Method::POST,
            "/v1/secrets",
            Some(r#"{"name": "x", "type": "opaque"}"#),
            problem(400, "invalid_request"),
        ),
        (
            Method::GET,
            "/v1/modules/Not_A_Name/x",
            None,
            problem(400, "invalid_request"),
        ),
        (
            Method::GET,
            "/v1/events?after=soon",
            None,
            problem(400, "invalid_request"),
        ),
        // A misspelt field is refused, not taken for "until further notice".
        (
            Method::POST,
            "/v1/workspaces/default/dev/sleep",
            Some(r#"{"forSecs": 5}"#),
            problem(400, "invalid_request"),
        ),
        // Credentials belong in username and password, never in the
        // server, which is shown and logged.
        (
            Method::POST,
            "/v1/secrets",
            Some(
                r#"{"name": "reg", "type": "docker-registry", "server": "https://u:hunter2@reg.example", "username": "u", "password": "p"}"#,
            ),
            problem(400, "invalid_request"),
        ),
    ];
    for (method, path, body, (status, code)) in cases {
        let (got, content_type, answer) = call(&http, method.clone(), path, body).await;
        assert_eq!(
            (got, &answer["code"]),
            (status, &code),
            "{method} {path}: {answer}"
        );
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{method} {path}"
        );
        assert_eq!(answer["status"], status.as_u16());
        assert_eq!(
            answer["type"],
            format!("urn:forklet:problem:{}", code.as_str().unwrap())
        );
        assert!(
            !answer["detail"].as_str().unwrap_or_default().is_empty(),
            "{method} {path}: a detail for people"
        );
        assert!(!answer.to_string().contains("hunter2"), "{answer}");
    }
    // A 405 still says what the path takes.
    let wrong = http
        .delete("http://forkletd/v1/modules")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["allow"], "GET,HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_a_ready_module_its_install_and_the_build() {
    // A free loopback port, handed to the daemon.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Some(harness) = Harness::start_with(move |config| {
        config.metrics_address = Some(address);
    })
    .await
    else {
        return;
    };
    harness.write("ws.yaml", WORKSPACE);
    harness.write("app.yaml", &ModuleYaml::default().to_string());
    harness.wait_phase("app", "ready").await;

    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("metrics are served");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    };
    assert_eq!(value("forklet_modules{phase=\"ready\"}"), 1.0);
    assert_eq!(value("forklet_modules{phase=\"failed\"}"), 0.0);
    // Counters are the process's: other tests in this binary add to them.
    assert!(value("forklet_phase_transitions_total{phase=\"ready\"}") >= 1.0);
    assert!(
        value("forklet_lifecycle_call_duration_seconds_count{endpoint=\"install\",outcome=\"ok\"}")
            >= 1.0
    );
    assert!(
        value(
            "forklet_docker_operation_duration_seconds_count{operation=\"create\",outcome=\"ok\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(&format!(
            "forklet_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(text.trim_end().ends_with("# EOF"));
}
