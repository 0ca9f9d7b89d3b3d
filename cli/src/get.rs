//! `forklet get modules|module NAME|workspaces|workspace NAME|problems`.

use chrono::Utc;
use forklet_state::Problem;
use forklet_state::api::{Kind, ModuleView, WorkspaceView};

use crate::client::{Client, ClientError, object_path};
use crate::table::{Format, age, render, structured};

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

pub async fn run(
    client: &Client,
    what: What,
    namespace: Option<String>,
    format: Format,
) -> Result<String, ClientError> {
    let ns = namespace.clone().unwrap_or_else(|| "default".into());
    let in_namespace = |item_ns: &str| namespace.as_deref().is_none_or(|n| n == item_ns);
    Ok(match what {
        What::Modules => {
            let mut modules: Vec<ModuleView> = client.get("/v1/modules").await?;
            modules.retain(|m| in_namespace(&m.namespace));
            if matches!(format, Format::Table) {
                let problems: Vec<Problem> = client.get("/v1/problems").await?;
                let unnamed = problems.iter().filter(|p| p.object.is_none()).count();
                if unnamed > 0 {
                    eprintln!(
                        "forklet: {unnamed} manifest problem(s) name no module or workspace: see `forklet get problems`"
                    );
                }
            }
            structured(format, &modules).unwrap_or_else(|| module_table(&modules))
        }
        What::Problems => {
            let problems: Vec<Problem> = client.get("/v1/problems").await?;
            structured(format, &problems).unwrap_or_else(|| {
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
            structured(format, &module)
                .unwrap_or_else(|| module_table(std::slice::from_ref(&module)))
        }
        What::Workspaces => {
            let mut workspaces: Vec<WorkspaceView> = client.get("/v1/workspaces").await?;
            workspaces.retain(|w| in_namespace(&w.namespace));
            structured(format, &workspaces).unwrap_or_else(|| workspace_table(&workspaces))
        }
        What::Workspace { name } => {
            let workspace: WorkspaceView = client
                .get(&object_path("workspaces", &ns, &name, "")?)
                .await?;
            structured(format, &workspace)
                .unwrap_or_else(|| workspace_table(std::slice::from_ref(&workspace)))
        }
    })
}

/// `get modules|module NAME -w`: the table, then a row per change (a
/// module forgotten shows once more as `deleted`), as `kubectl get -w`.
pub async fn watch(
    client: &Client,
    what: What,
    namespace: Option<String>,
) -> Result<(), ClientError> {
    let one = match &what {
        What::Modules => None,
        What::Module { name } => Some(name.clone()),
        _ => {
            return Err(ClientError::Api(
                "-w follows modules: get modules -w, or get module NAME -w".into(),
            ));
        }
    };
    let ns = namespace.clone().unwrap_or_else(|| "default".into());
    let in_scope = |m_ns: &str, m_name: &str| {
        namespace.as_deref().is_none_or(|n| n == m_ns) && one.as_deref().is_none_or(|n| n == m_name)
    };
    // Where the stream starts: before the first look, so no change is missed.
    let history: Vec<forklet_state::api::StreamEventView> = client.get("/v1/events").await?;
    let after = history.last().map_or(0, |e| e.id);
    let text = run(client, what, namespace.clone(), Format::Table).await?;
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
        let row = match client.get::<ModuleView>(&path).await {
            Ok(module) => {
                let row = module_row(&module, Utc::now());
                last.insert((m_ns, m_name), module);
                row
            }
            Err(err) if err.is_not_found() => {
                let Some(gone) = last.remove(&(m_ns, m_name)) else {
                    continue;
                };
                let mut row = module_row(&gone, Utc::now());
                row[3] = "deleted".into();
                row[6].clear();
                row
            }
            Err(err) => return Err(err),
        };
        let table = render(&MODULE_COLUMNS, &[row]);
        crate::print_out(table.lines().nth(1).unwrap_or_default());
    }
}

const MODULE_COLUMNS: [&str; 7] = [
    "NAME",
    "NAMESPACE",
    "WORKSPACE",
    "PHASE",
    "AGE",
    "LAST ACTIVITY",
    "MESSAGE",
];

fn module_table(modules: &[ModuleView]) -> String {
    let now = Utc::now();
    let rows: Vec<Vec<String>> = modules.iter().map(|m| module_row(m, now)).collect();
    render(&MODULE_COLUMNS, &rows)
}

fn module_row(m: &ModuleView, now: chrono::DateTime<Utc>) -> Vec<String> {
    vec![
        m.name.clone(),
        m.namespace.clone(),
        m.workspace.clone(),
        m.phase.to_string(),
        age(m.created_at, now),
        age(m.last_activity, now),
        message(m, now),
    ]
}

/// The module's message, with the retry it waits for when it failed.
fn message(module: &ModuleView, now: chrono::DateTime<Utc>) -> String {
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

fn workspace_table(workspaces: &[WorkspaceView]) -> String {
    let now = Utc::now();
    let rows: Vec<Vec<String>> = workspaces
        .iter()
        .map(|w| {
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
            vec![
                w.name.clone(),
                w.namespace.clone(),
                w.phase.to_string(),
                w.connection.clone(),
                cluster,
                w.modules.to_string(),
                next,
                manual,
                message,
            ]
        })
        .collect();
    render(
        &[
            "NAME",
            "NAMESPACE",
            "PHASE",
            "CONNECTION",
            "CLUSTER",
            "MODULES",
            "NEXT",
            "OVERRIDE",
            "MESSAGE",
        ],
        &rows,
    )
}

/// How long until `at`, kubectl-style.
fn until(at: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> String {
    age(Some(now), at.max(now))
}
