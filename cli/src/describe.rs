//! `forklet describe module|workspace NAME`: one object, everything a
//! person needs to understand it, laid out as `kubectl describe` does.

use std::fmt::Write;

use chrono::Utc;
use forklet_state::api::{EventView, ModuleView, WorkspaceView};
use serde_json::{Map, Value};

use crate::client::{Client, ClientError, object_path};
use crate::table::age;

#[derive(clap::Args)]
pub struct Args {
    /// `module` or `workspace`.
    kind: String,
    name: String,
    #[arg(short, long, default_value = "default")]
    namespace: String,
}

pub async fn run(client: &Client, args: Args) -> Result<String, ClientError> {
    match args.kind.as_str() {
        "module" | "modules" => {
            let path = object_path("modules", &args.namespace, &args.name, "?runner=true")?;
            Ok(module(&client.get::<ModuleView>(&path).await?))
        }
        "workspace" | "workspaces" => {
            let path = object_path("workspaces", &args.namespace, &args.name, "")?;
            Ok(workspace(&client.get::<WorkspaceView>(&path).await?))
        }
        other => Err(ClientError::Api(format!(
            "cannot describe {other:?}: module or workspace"
        ))),
    }
}

/// `Label:` padded so that values line up, as kubectl does.
fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<16}{value}", format!("{label}:"));
}

fn or_none(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("<none>")
}

fn module(m: &ModuleView) -> String {
    let now = Utc::now();
    let mut out = String::new();
    field(&mut out, "Name", &m.name);
    field(&mut out, "Namespace", &m.namespace);
    field(
        &mut out,
        "Workspace",
        format!("{}/{}", m.workspace_namespace, m.workspace),
    );
    field(&mut out, "File", or_none(m.file.as_deref()));
    field(&mut out, "Definition", or_none(m.definition.as_deref()));
    field(&mut out, "Image", or_none(m.image.as_deref()));
    field(&mut out, "Phase", m.phase);
    field(&mut out, "Message", or_none(Some(&m.message)));
    if let Some(operation) = m.operation {
        field(&mut out, "Call", format!("POST {}", operation.path()));
    }
    if m.attempts > 0 {
        field(&mut out, "Attempts", m.attempts);
    }
    if let Some(at) = m.next_retry {
        field(
            &mut out,
            "Next retry",
            format!("in {}", age(Some(now), at.max(now))),
        );
    }
    field(&mut out, "Asleep", if m.hibernated { "yes" } else { "no" });
    if let Some(reason) = &m.sleep_reason {
        field(&mut out, "Sleep reason", reason);
    }
    if let Some(o) = &m.manual_override {
        let until = o
            .until
            .map_or("until replaced".to_owned(), |at| format!("until {at}"));
        field(&mut out, "Override", format!("{} {until}", o.action));
    }
    out.push_str("Runner:\n");
    let _ = writeln!(
        out,
        "  Container:    {}",
        or_none(m.container_id.as_deref())
    );
    let _ = writeln!(
        out,
        "  Network:      {}",
        m.network.as_deref().unwrap_or("bridge")
    );
    if let Some(runner) = &m.runner {
        let _ = writeln!(out, "  Name:         {}", runner.container);
        let _ = writeln!(
            out,
            "  Endpoint:     {}",
            or_none(runner.endpoint.as_deref())
        );
        let _ = writeln!(out, "  State:        {}", runner.state);
        if let Some(started) = runner.started_at {
            let _ = writeln!(
                out,
                "  Started:      {started} ({} ago)",
                age(Some(started), now)
            );
        }
    }
    if let Some(created) = m.created_at {
        field(
            &mut out,
            "Created",
            format!("{created} ({} ago)", age(Some(created), now)),
        );
    }
    section(&mut out, "Config", &m.config);
    section(&mut out, "Metadata", &m.metadata);
    events(&mut out, &m.events, now);
    out.trim_end().to_owned()
}

/// kubectl describe's last section: age, reason, message, newest last.
fn events(out: &mut String, events: &[EventView], now: chrono::DateTime<Utc>) {
    out.push_str("Events:\n");
    if events.is_empty() {
        out.push_str("  <none>\n");
    }
    for event in events {
        let _ = writeln!(
            out,
            "  {:<8} {:<16} {}",
            age(Some(event.at), now),
            event.reason,
            event.message
        );
    }
}

fn section(out: &mut String, title: &str, values: &Map<String, Value>) {
    let _ = writeln!(out, "{title}:");
    if values.is_empty() {
        out.push_str("  <none>\n");
    }
    for (key, value) in values {
        let shown = match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(out, "  {key}: {shown}");
    }
}

fn workspace(w: &WorkspaceView) -> String {
    let now = Utc::now();
    let mut out = String::new();
    field(&mut out, "Name", &w.name);
    field(&mut out, "Namespace", &w.namespace);
    field(&mut out, "File", or_none(w.file.as_deref()));
    field(&mut out, "Phase", w.phase);
    field(&mut out, "Message", or_none(Some(&w.message)));
    field(&mut out, "Connection", &w.connection);
    field(&mut out, "Modules", w.modules);
    field(&mut out, "Asleep", if w.hibernated { "yes" } else { "no" });
    if let Some(reason) = &w.sleep_reason {
        field(&mut out, "Sleep reason", reason);
    }
    if let Some(schedule) = &w.schedule {
        field(&mut out, "Schedule", crate::table::schedule(schedule));
    }
    if let Some(next) = &w.next_transition {
        field(
            &mut out,
            "Next",
            format!("{} in {}", next.action, age(Some(now), next.at.max(now))),
        );
    }
    if let Some(o) = &w.manual_override {
        let until = o
            .until
            .map_or("until replaced".to_owned(), |at| format!("until {at}"));
        field(&mut out, "Override", format!("{} {until}", o.action));
    }
    if let Some(cluster) = &w.cluster {
        out.push_str("Cluster:\n");
        let _ = writeln!(
            out,
            "  Endpoint:     {}",
            or_none(cluster.endpoint.as_deref())
        );
        let _ = writeln!(out, "  Via:          {}", or_none(cluster.via.as_deref()));
        if let Some(reason) = &cluster.reason {
            let _ = writeln!(out, "  Reason:       {reason}");
        }
    }
    events(&mut out, &w.events, now);
    out.trim_end().to_owned()
}
