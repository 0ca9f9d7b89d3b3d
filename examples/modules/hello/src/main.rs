//! hello: a Forkspacer `kind: Custom` module, as small as the contract allows.
//!
//! It serves `GET /health` and `POST /install|/uninstall|/sleep|/resume` on
//! `$PORT` (8080), prints what it finds in `/forkspacer` at start and one
//! JSON line per request (`{"endpoint":..,"body":..}`)
//! so a reader of `docker logs` sees exactly what the runtime sent, and echoes
//! the request body back as the module's metadata with a few fields of its own.
//!
//! Only std and serde_json: the binary links statically and runs in a
//! `FROM scratch` image (see `build-image.sh`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// Requests larger than this are refused: the contract carries small JSON
/// objects, and a module must not be made to buffer without bound.
const MAX_BODY: usize = 1 << 20;

fn main() {
    handle_sigterm();
    log_start();
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let listener = TcpListener::bind((
        "0.0.0.0",
        port.parse::<u16>().expect("PORT is a port number"),
    ))
    .expect("bind the module port");
    let started = Instant::now();
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(err) = serve(stream, started) {
                eprintln!("hello: connection error: {err}");
            }
        });
    }
}

struct Reply {
    status: u16,
    body: String,
}

fn serve(mut stream: TcpStream, started: Instant) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let reply = if content_length > MAX_BODY {
        Reply {
            status: 413,
            body: "request body too large".into(),
        }
    } else {
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body)?;
        route(method, path, &body, started)
    };
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reason(reply.status),
        reply.body.len(),
        reply.body
    )?;
    stream.flush()
}

fn route(method: &str, path: &str, raw: &[u8], started: Instant) -> Reply {
    let body: Value = if raw.is_empty() {
        Value::Object(Map::new())
    } else {
        match serde_json::from_slice(raw) {
            Ok(value) => value,
            Err(err) => {
                return Reply {
                    status: 400,
                    body: format!("request body is not JSON: {err}"),
                };
            }
        }
    };
    let endpoint = path.trim_start_matches('/');
    log_request(endpoint, &body);
    let mut metadata = match body {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    match (method, path) {
        ("GET", "/health") => Reply {
            status: 200,
            body: json!({
                "timestamp": rfc3339_now(),
                "uptime": started.elapsed().as_secs_f64(),
                "message": "Service is running",
                "healthy": true,
            })
            .to_string(),
        },
        ("POST", "/install") => {
            // Validating config in /install is what the specification asks of
            // modules; `reject` lets a manifest show how a refusal looks.
            if let Some(reason) = metadata.get("reject").and_then(Value::as_str) {
                return Reply {
                    status: 400,
                    body: reason.to_owned(),
                };
            }
            if metadata.get("probeControlApi") == Some(&Value::Bool(true)) {
                metadata.insert("controlApi".into(), probe_control_api().into());
            }
            let installs = metadata
                .get("installs")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + 1;
            metadata.insert("installs".into(), installs.into());
            metadata.insert("installedBy".into(), "hello".into());
            Reply {
                status: 201,
                body: Value::Object(metadata).to_string(),
            }
        }
        ("POST", "/sleep") => {
            metadata.insert("asleep".into(), true.into());
            Reply {
                status: 200,
                body: Value::Object(metadata).to_string(),
            }
        }
        ("POST", "/resume") => {
            metadata.insert("asleep".into(), false.into());
            Reply {
                status: 200,
                body: Value::Object(metadata).to_string(),
            }
        }
        ("POST", "/uninstall") => Reply {
            status: 204,
            body: String::new(),
        },
        _ => Reply {
            status: 404,
            body: format!("no route for {method} {path}"),
        },
    }
}

/// Shows what the runtime handed over in `/forkspacer`, as modules written
/// for the operator read it: `config.json` and, with the `workspace`
/// permission, the kubeconfig named by `$KUBECONFIG`.
fn log_start() {
    let config = std::fs::read_to_string("/forkspacer/config.json")
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let kubeconfig = std::env::var("KUBECONFIG").ok();
    let readable = kubeconfig
        .as_deref()
        .is_some_and(|path| std::fs::read(path).is_ok());
    let line = json!({ "event": "start", "config": config, "kubeconfig": kubeconfig, "kubeconfigReadable": readable });
    println!("{line}");
}

/// With the `controller` permission a module may call forklet's control API
/// on `$FORKLET_SOCKET`; this reports the status line of `GET /v1/modules`,
/// or why there was none.
fn probe_control_api() -> String {
    use std::os::unix::net::UnixStream;
    let Ok(path) = std::env::var("FORKLET_SOCKET") else {
        return "unreachable: FORKLET_SOCKET is not set".into();
    };
    let exchange = || -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&path)?;
        stream.write_all(
            b"GET /v1/modules HTTP/1.1\r\nHost: forkletd\r\nConnection: close\r\n\r\n",
        )?;
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status)?;
        Ok(status.trim_end().to_owned())
    };
    exchange().unwrap_or_else(|err| format!("unreachable: {err}"))
}

fn log_request(endpoint: &str, body: &Value) {
    let line = json!({ "endpoint": endpoint, "body": body }).to_string();
    let mut out = std::io::stdout().lock();
    // A closed stdout must not take the module down with it.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Unknown",
    }
}

/// UTC now as `YYYY-MM-DDTHH:MM:SSZ`, without a date crate.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (H. Hinnant), valid for every date after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// PID 1 in a container gets no default signal handlers: without this,
/// `docker stop` would wait its full grace period and then SIGKILL us.
fn handle_sigterm() {
    unsafe extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(code: i32) -> !;
    }
    extern "C" fn on_term(_: i32) {
        // Only async-signal-safe calls here: _exit, not std::process::exit.
        unsafe { _exit(0) }
    }
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    unsafe {
        signal(SIGTERM, on_term);
        signal(SIGINT, on_term);
    }
}
