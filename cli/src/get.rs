//! `forklet get modules|module NAME|workspaces|workspace NAME|problems`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use forklet_state::Problem;
use forklet_state::api::{Kind, ModuleView, WorkspaceView};
use serde::Serialize;

use crate::client::{Client, ClientError, object_path};
use crate::colour::{Paint, Tone, phase_tone};
use crate::table::{Format, age, render_toned, schedule, structured};

#[derive(clap::Subcommand)]
pub enum What {
    /// All modules (or those of one namespace with -n).
    Modules,
    /// One module.
    Module { name: String },
    /// All workspaces (or those of one namespace with -n).
    Workspaces,
    /// One workspace.
    Workspace { name: String },
    /// Every manifest problem, with its file (also those of files that name
    /// no module or workspace: invalid YAML, names that are not Kubernetes names).
    Problems,
}

/// `get -o`. Not [`Format`]: wide rows and names are of listed objects,
/// which only `get` shows, so no other command accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// The table with more columns: a module's image, container, network
    /// and definition; a workspace's schedule, network, file and sleep reason.
    Wide,
    /// `module/NAME` or `workspace/NAME`, one a line, as `kubectl -o name`.
    Name,
    /// The daemon's view, every field: for programs.
    Json,
    /// As json, in YAML.
    Yaml,
}

impl Output {
    fn structured(self) -> Option<Format> {
        match self {
            Output::Json => Some(Format::Json),
            Output::Yaml => Some(Format::Yaml),
            Output::Table | Output::Wide | Output::Name => None,
        }
    }
}

/// Why `get` cannot do what its arguments ask, told before the daemon is
/// asked anything (a usage error).
pub fn refusal(what: &What, output: Output, watch: bool) -> Option<&'static str> {
    match (what, output, watch) {
        (What::Problems, Output::Name, _) => {
            Some("-o name: manifest problems have no names; use -o table, wide, json or yaml")
        }
        (_, Output::Json | Output::Yaml, true) => Some(
            "-w prints a row per change: use -o table, wide or name; `forklet events -w -o json|yaml` streams documents",
        ),
        _ => None,
    }
}

pub async fn run(
    client: &Client,
    what: What,
    namespace: Option<String>,
    output: Output,
) -> Result<String, ClientError> {
    let paint = Paint::stdout();
    let ns = namespace.clone().unwrap_or_else(|| "default".into());
    let in_namespace = |item_ns: &str| namespace.as_deref().is_none_or(|n| n == item_ns);
    Ok(match what {
        What::Modules => {
            let mut modules: Vec<ModuleView> = client.get("/v1/modules").await?;
            modules.retain(|m| in_namespace(&m.namespace));
            if matches!(output, Output::Table | Output::Wide) {
                let problems: Vec<Problem> = client.get("/v1/problems").await?;
                let unnamed = problems.iter().filter(|p| p.object.is_none()).count();
                if unnamed > 0 {
                    eprintln!(
                        "forklet: {unnamed} manifest problem(s) name no module or workspace: see `forklet get problems`"
                    );
                }
            }
            show_modules(output, &modules, &modules, paint)
        }
        What::Problems => {
            let problems: Vec<Problem> = client.get("/v1/problems").await?;
            // Wide has nothing to add: a problem is one line already.
            output
                .structured()
                .and_then(|format| structured(format, &problems))
                .unwrap_or_else(|| {
                    if problems.is_empty() {
                        return "no manifest problems".to_owned();
                    }
                    problems
                        .iter()
                        .map(|p| format!("{p}\n"))
                        .collect::<String>()
                        .trim_end()
                        .to_owned()
                })
        }
        What::Module { name } => {
            let path = object_path("modules", &ns, &name, "")?;
            let module: ModuleView = client.get(&path).await?;
            show_modules(output, &module, std::slice::from_ref(&module), paint)
        }
        What::Workspaces => {
            let mut workspaces: Vec<WorkspaceView> = client.get("/v1/workspaces").await?;
            workspaces.retain(|w| in_namespace(&w.namespace));
            show_workspaces(output, &workspaces, &workspaces, paint)
        }
        What::Workspace { name } => {
            let workspace: WorkspaceView = client
                .get(&object_path("workspaces", &ns, &name, "")?)
                .await?;
            show_workspaces(output, &workspace, std::slice::from_ref(&workspace), paint)
        }
    })
}

/// `value` (the list, or the one module asked for) as `output` asks;
/// `modules` are the modules in it.
fn show_modules(
    output: Output,
    value: &impl Serialize,
    modules: &[ModuleView],
    paint: Paint,
) -> String {
    match output {
        Output::Json | Output::Yaml => output
            .structured()
            .and_then(|format| structured(format, value))
            .unwrap_or_default(),
        Output::Name => names("module", modules.iter().map(|m| m.name.as_str())),
        Output::Table | Output::Wide => {
            let wide = output == Output::Wide;
            let now = Utc::now();
            let rows: Vec<Vec<String>> = modules
                .iter()
                .map(|m| module_row(m, m.phase.to_string(), wide, now))
                .collect();
            module_table(&rows, wide, paint)
        }
    }
}

/// As [`show_modules`], for workspaces.
fn show_workspaces(
    output: Output,
    value: &impl Serialize,
    workspaces: &[WorkspaceView],
    paint: Paint,
) -> String {
    match output {
        Output::Json | Output::Yaml => output
            .structured()
            .and_then(|format| structured(format, value))
            .unwrap_or_default(),
        Output::Name => names("workspace", workspaces.iter().map(|w| w.name.as_str())),
        Output::Table | Output::Wide => workspace_table(workspaces, output == Output::Wide, paint),
    }
}

/// `kind/NAME` a line, as `kubectl get -o name`: what `events --for` takes.
fn names<'a>(kind: &str, names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("{kind}/{name}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `get modules|module NAME -w`: the table (or the names), then a row (or
/// a name) per change; a module forgotten shows once more as `deleted`, as
/// `kubectl get -w`.
pub async fn watch(
    client: &Client,
    what: What,
    namespace: Option<String>,
    output: Output,
) -> Result<(), ClientError> {
    let one = match &what {
        What::Modules => None,
        What::Module { name } => Some(name.clone()),
        What::Workspaces => return watch_workspaces(client, None, namespace, output).await,
        What::Workspace { name } => {
            return watch_workspaces(client, Some(name.clone()), namespace, output).await;
        }
        What::Problems => {
            return Err(ClientError::Api(
                "-w follows modules and workspaces, not problems".into(),
            ));
        }
    };
    let paint = Paint::stdout();
    let wide = output == Output::Wide;
    let ns = namespace.clone().unwrap_or_else(|| "default".into());
    let in_scope = |m_ns: &str, m_name: &str| {
        namespace.as_deref().is_none_or(|n| n == m_ns) && one.as_deref().is_none_or(|n| n == m_name)
    };
    // Where the stream starts: before the first look, so no change is missed.
    let history: Vec<forklet_state::api::StreamEventView> = client.get("/v1/events").await?;
    let after = history.last().map_or(0, |e| e.id);
    let text = run(client, what, namespace.clone(), output).await?;
    crate::print_out(&text);
    let mut last: std::collections::HashMap<(String, String), ModuleView> = Default::default();
    let (changes_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let query = match &one {
        Some(name) => format!("after={after}&module={ns}/{name}"),
        None => format!("after={after}"),
    };
    let follow = crate::events::follow(client, &query, move |event| {
        event.kind != Kind::Module || changes_tx.send((event.namespace, event.name)).is_ok()
    });
    tokio::pin!(follow);
    loop {
        let (m_ns, m_name) = tokio::select! {
            ended = &mut follow => return ended,
            Some(change) = changes.recv() => change,
        };
        if !in_scope(&m_ns, &m_name) {
            continue;
        }
        let path = object_path("modules", &m_ns, &m_name, "")?;
        let (module, phase) = match client.get::<ModuleView>(&path).await {
            Ok(module) => {
                last.insert((m_ns, m_name), module.clone());
                let phase = module.phase.to_string();
                (module, phase)
            }
            Err(err) if err.is_not_found() => {
                let Some(mut gone) = last.remove(&(m_ns, m_name)) else {
                    continue;
                };
                gone.message.clear();
                (gone, "deleted".to_owned())
            }
            Err(err) => return Err(err),
        };
        if output == Output::Name {
            crate::print_out(&names("module", [module.name.as_str()].into_iter()));
            continue;
        }
        let row = module_row(&module, phase, wide, Utc::now());
        let table = module_table(&[row], wide, paint);
        crate::print_out(table.lines().nth(1).unwrap_or_default());
    }
}

/// One module's cells; `phase` is apart from the module so that a row can
/// say `deleted`, which no module's phase ever is.
fn module_row(module: &ModuleView, phase: String, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let m = module;
    let mut row = vec![
        m.name.clone(),
        m.namespace.clone(),
        m.workspace.clone(),
        phase,
        age(m.created_at, now),
        age(m.last_activity, now),
    ];
    if wide {
        let container = m
            .container_id
            .as_deref()
            // Docker's short id, as `docker ps` shows it.
            .map_or("-".to_owned(), |id| id.chars().take(12).collect());
        row.extend([
            m.image.clone().unwrap_or_else(|| "-".into()),
            container,
            // No network of its own: Docker's default bridge.
            m.network.clone().unwrap_or_else(|| "bridge".into()),
            m.definition.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    row.push(message(m, now));
    row
}

fn module_table(rows: &[Vec<String>], wide: bool, paint: Paint) -> String {
    let header = columns(
        &[
            "NAME",
            "NAMESPACE",
            "WORKSPACE",
            "PHASE",
            "AGE",
            "LAST ACTIVITY",
        ],
        &["IMAGE", "CONTAINER", "NETWORK", "DEFINITION"],
        wide,
    );
    render_toned(&header, rows, paint, phase_column(&header))
}

/// A table's columns: `wide` adds its own before MESSAGE, which is last.
fn columns(base: &[&'static str], wide_only: &[&'static str], wide: bool) -> Vec<&'static str> {
    let mut header = base.to_vec();
    if wide {
        header.extend(wide_only);
    }
    header.push("MESSAGE");
    header
}

/// Colours the PHASE column, and nothing else.
fn phase_column(header: &[&str]) -> impl Fn(usize, &str) -> Option<Tone> + use<> {
    let phase = header.iter().position(|h| *h == "PHASE");
    move |column, text| (Some(column) == phase).then(|| phase_tone(text)).flatten()
}

/// The module's message, with the retry it waits for when it failed.
fn message(module: &ModuleView, now: DateTime<Utc>) -> String {
    match module.next_retry {
        Some(at) if module.attempts > 0 => {
            let wait = (at - now).num_seconds().max(0);
            format!(
                "{} (attempt {}, next retry in {wait}s)",
                module.message, module.attempts
            )
        }
        _ => module.message.clone(),
    }
}

/// `get workspaces|workspace NAME -w`: the table, then a row for each
/// workspace that changed, looked at again after each event (its own, or
/// one of its modules'); one gone shows once more as `deleted`.
async fn watch_workspaces(
    client: &Client,
    one: Option<String>,
    namespace: Option<String>,
    output: Output,
) -> Result<(), ClientError> {
    let paint = Paint::stdout();
    let wide = output == Output::Wide;
    let ns = namespace.clone().unwrap_or_else(|| "default".into());
    let in_scope = |w: &WorkspaceView| match &one {
        Some(name) => w.namespace == ns && &w.name == name,
        None => namespace.as_deref().is_none_or(|n| n == w.namespace),
    };
    // Where the stream starts: before the first look, so no change is missed.
    let history: Vec<forklet_state::api::StreamEventView> = client.get("/v1/events").await?;
    let after = history.last().map_or(0, |e| e.id);
    let look = || async {
        let all: Vec<WorkspaceView> = client.get("/v1/workspaces").await?;
        Ok::<_, ClientError>(
            all.into_iter()
                .filter(|w| in_scope(w))
                .map(|w| ((w.namespace.clone(), w.name.clone()), w))
                .collect::<HashMap<_, _>>(),
        )
    };
    // The table and what later looks are compared with: one answer, so
    // that nothing changes between the two unseen.
    let mut last = look().await?;
    if let (Some(name), true) = (&one, last.is_empty()) {
        return Err(ClientError::Refused {
            code: forklet_state::api::ErrorCode::NotFound,
            detail: format!("Workspace {ns}/{name} not found"),
        });
    }
    let mut first: Vec<WorkspaceView> = last.values().cloned().collect();
    first.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    crate::print_out(&show_workspaces(output, &first, &first, paint));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let query = format!("after={after}");
    let follow = crate::events::follow(client, &query, move |_| tx.send(()).is_ok());
    tokio::pin!(follow);
    loop {
        tokio::select! {
            ended = &mut follow => return ended,
            Some(()) = events.recv() => {}
        }
        // A burst of events is one look.
        while events.try_recv().is_ok() {}
        let now = look().await?;
        let mut changed: Vec<(&WorkspaceView, bool)> = now
            .iter()
            .filter(|(key, w)| last.get(*key) != Some(*w))
            .map(|(_, w)| (w, false))
            .collect();
        changed.extend(
            last.iter()
                .filter(|(key, _)| !now.contains_key(*key))
                .map(|(_, w)| (w, true)),
        );
        changed.sort_by(|a, b| (&a.0.namespace, &a.0.name).cmp(&(&b.0.namespace, &b.0.name)));
        for (workspace, gone) in changed {
            if output == Output::Name {
                crate::print_out(&names("workspace", [workspace.name.as_str()].into_iter()));
                continue;
            }
            let mut row = workspace_row(workspace, wide, Utc::now());
            if gone {
                row[2] = "deleted".into();
            }
            let table = render_toned(
                &workspace_header(wide),
                &[row],
                paint,
                phase_column(&workspace_header(wide)),
            );
            crate::print_out(table.lines().nth(1).unwrap_or_default());
        }
        last = now;
    }
}

fn workspace_table(workspaces: &[WorkspaceView], wide: bool, paint: Paint) -> String {
    let now = Utc::now();
    let rows: Vec<Vec<String>> = workspaces
        .iter()
        .map(|w| workspace_row(w, wide, now))
        .collect();
    let header = workspace_header(wide);
    render_toned(&header, &rows, paint, phase_column(&header))
}

fn workspace_header(wide: bool) -> Vec<&'static str> {
    columns(
        &[
            "NAME",
            "NAMESPACE",
            "PHASE",
            "CONNECTION",
            "CLUSTER",
            "MODULES",
            "NEXT",
            "OVERRIDE",
        ],
        &["SCHEDULE", "NETWORK", "FILE", "SLEEP REASON"],
        wide,
    )
}

fn workspace_row(w: &WorkspaceView, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let next = w.next_transition.as_ref().map_or("-".to_owned(), |t| {
        format!("{} in {}", t.action, until(t.at, now))
    });
    let manual = w
        .manual_override
        .as_ref()
        .map_or("-".to_owned(), |o| match o.until {
            Some(at) => format!("{} for {}", o.action, until(at, now)),
            None => o.action.to_string(),
        });
    let cluster = match &w.cluster {
        None => "-".to_owned(),
        Some(c) => match (&c.endpoint, &c.via) {
            (Some(endpoint), Some(via)) => format!("{endpoint} ({via})"),
            _ => "unreachable".to_owned(),
        },
    };
    let reason = w.cluster.as_ref().and_then(|c| c.reason.as_deref());
    let message = match (w.message.as_str(), reason) {
        ("", Some(reason)) => reason.to_owned(),
        (message, Some(reason)) => format!("{message}; {reason}"),
        (message, None) => message.to_owned(),
    };
    let mut row = vec![
        w.name.clone(),
        w.namespace.clone(),
        w.phase.to_string(),
        w.connection.clone(),
        cluster,
        w.modules.to_string(),
        next,
        manual,
    ];
    if wide {
        let network = match &w.cluster {
            // No module of it reaches the cluster: no network either.
            None => "-".to_owned(),
            Some(c) => c.network.clone().unwrap_or_else(|| "bridge".into()),
        };
        row.extend([
            w.schedule.as_ref().map_or("-".to_owned(), schedule),
            network,
            w.file.clone().unwrap_or_else(|| "-".into()),
            w.sleep_reason.map_or("-".to_owned(), |r| r.to_string()),
        ]);
    }
    row.push(message);
    row
}

/// How long until `at`, kubectl-style.
fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    age(Some(now), at.max(now))
}
