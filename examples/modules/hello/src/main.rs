//! hello: a Forkspacer `kind: Custom` module, as small as the contract allows.
//!
//! It serves `GET /health` and `POST /install|/uninstall|/sleep|/resume`,
//! prints what it finds in `/forkspacer` at start and one JSON line per
//! request (`{"endpoint":..,"body":..}`), so a reader of `docker logs` sees
//! exactly what the runtime sent, and echoes the request body back as the
//! module's metadata with a few fields of its own.

use hello_module::{Reply, Request, config_file, health, log_line, serve};
use serde_json::{Map, Value, json};

fn main() {
    log_start();
    serve(route, false);
}

fn route(request: &Request) -> Reply {
    let mut metadata = request.body.as_object().cloned().unwrap_or_default();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/health") => health(),
        ("POST", "/install") => {
            // Validating config in /install is what the specification asks of
            // modules; `reject` lets a manifest show how a refusal looks.
            if let Some(reason) = metadata.get("reject").and_then(Value::as_str) {
                return Reply::text(400, reason);
            }
            if metadata.get("probeControlApi") == Some(&Value::Bool(true)) {
                let (status, body) = control_api("GET", "/v1/modules");
                metadata.insert("controlApi".into(), status.into());
                let names: Vec<Value> = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m.get("name").cloned())
                    .collect();
                metadata.insert("controlApiModules".into(), names.into());
                let (secrets, _) = control_api("GET", "/v1/secrets");
                metadata.insert("controlApiSecrets".into(), secrets.into());
                let (forget, _) = control_api("POST", "/v1/modules/default/plain/forget");
                metadata.insert("controlApiForget".into(), forget.into());
            }
            let installs = metadata
                .get("installs")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + 1;
            metadata.insert("installs".into(), installs.into());
            metadata.insert("installedBy".into(), "hello".into());
            Reply::json(201, &Value::Object(metadata))
        }
        ("POST", "/sleep") => asleep(metadata, true),
        ("POST", "/resume") => asleep(metadata, false),
        ("POST", "/uninstall") => Reply::empty(204),
        (method, path) => Reply::text(404, &format!("no route for {method} {path}")),
    }
}

fn asleep(mut metadata: Map<String, Value>, asleep: bool) -> Reply {
    metadata.insert("asleep".into(), asleep.into());
    Reply::json(200, &Value::Object(metadata))
}

/// Shows what the runtime handed over in `/forkspacer`, as modules written
/// for the operator read it: `config.json` and, with the `workspace`
/// permission, the kubeconfig named by `$KUBECONFIG`.
fn log_start() {
    let kubeconfig = std::env::var("KUBECONFIG").ok();
    let readable = kubeconfig
        .as_deref()
        .is_some_and(|path| std::fs::read(path).is_ok());
    log_line(&json!({
        "event": "start",
        "config": config_file(),
        "kubeconfig": kubeconfig,
        "kubeconfigReadable": readable,
    }));
}

/// A module with the `controller` permission finds forklet's control API
/// on `$FORKLET_SOCKET`; this makes one request there and returns the
/// status line and the body, or why there was none.
fn control_api(method: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let Ok(socket) = std::env::var("FORKLET_SOCKET") else {
        return (
            "unreachable: FORKLET_SOCKET is not set".into(),
            String::new(),
        );
    };
    let exchange = || -> std::io::Result<(String, String)> {
        let mut stream = UnixStream::connect(&socket)?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: forkletd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.take(1 << 20).read_to_string(&mut answer)?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.lines().next().unwrap_or_default().to_owned();
        Ok((status, body.to_owned()))
    };
    exchange().unwrap_or_else(|err| (format!("unreachable: {err}"), String::new()))
}
