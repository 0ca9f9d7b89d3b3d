//! misbehave: a module that breaks the contract in the way its config says,
//! to show (and test) what forklet does about it.
//!
//! - `health`: `"never"` answers 503 for ever; `"hang"` never answers;
//!   `"exit"` exits with code 3 0.7 s after it starts, before it listens (a
//!   module that crashes at start, after its container was seen running).
//!   (Read from `/forkspacer/config.json` at start.)
//! - `sigterm`: `"ignore"` ignores SIGTERM, so that only a kill stops it.
//! - `install`, `uninstall`, `sleep`, `resume`: `"ok"` (the default) answers
//!   as the specification says; `"hang"` never answers; `"500"` answers 500;
//!   `"400"` answers 400 with a reason; `"garbage"` answers the right status with a body that is not a JSON
//!   object; `"huge"` answers the right status with 8 MiB; `"exit"` exits
//!   mid-call; `"empty"` answers the right status with no body. (Read from each request's body, which carries the config.)

use hello_module::{Reply, Request, config_file, health, serve};
use serde_json::Value;

fn main() {
    if config_file().is_some_and(|c| c.get("health") == Some(&Value::from("exit"))) {
        std::thread::sleep(std::time::Duration::from_millis(700));
        std::process::exit(3);
    }
    let ignore = config_file().is_some_and(|c| c.get("sigterm") == Some(&Value::from("ignore")));
    serve(route, ignore);
}

fn route(request: &Request) -> Reply {
    if request.method == "GET" && request.path == "/health" {
        let wanted =
            config_file().and_then(|c| c.get("health").and_then(Value::as_str).map(str::to_owned));
        return match wanted.as_deref() {
            Some("never") => Reply::text(503, "never healthy"),
            Some("hang") => hang(),
            _ => health(),
        };
    }
    let status = match request.path.as_str() {
        "/install" => 201,
        "/uninstall" => 204,
        "/sleep" | "/resume" => 200,
        _ => return Reply::text(404, "no such endpoint"),
    };
    let behaviour = request
        .body
        .get(request.endpoint())
        .and_then(Value::as_str)
        .unwrap_or("ok");
    match behaviour {
        "hang" => hang(),
        "500" => Reply::text(500, "boom"),
        "400" => Reply::text(400, "rejected: this module refuses the request"),
        "garbage" => Reply::text(status, "this is not a JSON object"),
        "huge" => Reply {
            status,
            body: vec![b' '; 8 << 20],
        },
        "exit" => std::process::exit(3),
        "empty" => Reply::empty(status),
        _ if status == 204 => Reply::empty(204),
        _ => Reply::json(status, &request.body),
    }
}

fn hang() -> Reply {
    loop {
        std::thread::park();
    }
}
