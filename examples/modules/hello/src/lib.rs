//! The plumbing of a Forkspacer Custom module, for the example modules: a
//! plain HTTP/1.1 server on `$PORT` (8080), one thread per connection, JSON
//! bodies, one JSON line on stdout per request, and a SIGTERM handler
//! (PID 1 in a container gets none). Only std and serde_json, so the
//! binaries link statically and run in a `FROM scratch` image.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Requests larger than this are refused: the contract carries small JSON
/// objects, and a module must not be made to buffer without bound.
const MAX_BODY: usize = 1 << 20;

static STARTED: OnceLock<Instant> = OnceLock::new();

pub struct Request {
    pub method: String,
    pub path: String,
    /// The JSON body (`{}` when there is none).
    pub body: Value,
}

impl Request {
    /// `install` for `/install`, as the request log names it.
    pub fn endpoint(&self) -> &str {
        self.path.trim_start_matches('/')
    }
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            body: body.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: Vec::new(),
        }
    }
}

/// Serves `handler` for ever; every request is logged before it is handled.
/// Serves `handler` on `$PORT`; `deaf` ignores SIGTERM instead of exiting on it.
pub fn serve(handler: fn(&Request) -> Reply, deaf: bool) {
    match deaf {
        true => ignore_sigterm(),
        false => handle_sigterm(),
    }
    STARTED.get_or_init(Instant::now);
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind the module port");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(err) = connection(stream, handler) {
                eprintln!("connection error: {err}");
            }
        });
    }
}

fn connection(mut stream: TcpStream, handler: fn(&Request) -> Reply) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
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
        Reply::text(413, "request body too large")
    } else {
        let mut raw = vec![0; content_length];
        reader.read_exact(&mut raw)?;
        match parse_body(&raw) {
            Ok(body) => {
                let request = Request { method, path, body };
                log_line(&json!({ "endpoint": request.endpoint(), "body": request.body }));
                handler(&request)
            }
            Err(err) => Reply::text(400, &format!("request body is not JSON: {err}")),
        }
    };
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    )?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

fn parse_body(raw: &[u8]) -> serde_json::Result<Value> {
    if raw.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice(raw)
    }
}

/// The answer the specification shows for `GET /health`.
pub fn health() -> Reply {
    let uptime = STARTED.get().map_or(0.0, |s| s.elapsed().as_secs_f64());
    let report = json!({"timestamp": rfc3339_now(), "uptime": uptime, "message": "Service is running", "healthy": true});
    Reply::json(200, &report)
}

/// The validated config forklet (or the operator) put in `/forkspacer`.
pub fn config_file() -> Option<Value> {
    let text = std::fs::read_to_string("/forkspacer/config.json").ok()?;
    serde_json::from_str(&text).ok()
}

/// One JSON line on stdout; a closed stdout must not take the module down.
pub fn log_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
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
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// UTC now as `YYYY-MM-DDTHH:MM:SSZ`, without a date crate.
pub fn rfc3339_now() -> String {
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

unsafe extern "C" {
    /// libc's: `handler` is a function's address, or `SIG_IGN` (1).
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(code: i32) -> !;
}
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Ignores SIGTERM from now on, as a module that masks it does: only
/// SIGKILL (after `docker stop`'s grace) ends the process, init or not.
fn ignore_sigterm() {
    const SIG_IGN: usize = 1;
    unsafe {
        signal(SIGTERM, SIG_IGN);
    }
}

/// PID 1 in a container gets no default signal handlers: without this,
/// `docker stop` would wait its full grace period and then SIGKILL us.
fn handle_sigterm() {
    extern "C" fn on_term(_: i32) {
        // Only async-signal-safe calls here: _exit, not std::process::exit.
        unsafe { _exit(0) }
    }
    let handler = on_term as extern "C" fn(i32) as usize;
    unsafe {
        signal(SIGTERM, handler);
        signal(SIGINT, handler);
    }
}
