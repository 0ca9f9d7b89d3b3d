//! `forklet doctor [WORKSPACE]`: asks each workspace's API server for
//! `/version` the way its modules' runners reach it, and prints every step.

use forklet_state::api::{CheckName, CheckView, DoctorView, WorkspaceView};

use crate::client::{Client, ClientError, object_path};
use crate::table::{Format, structured};

/// The report, and whether every check passed.
pub async fn run(
    client: &Client,
    workspace: Option<String>,
    namespace: &str,
    format: Format,
) -> Result<(String, bool), ClientError> {
    let targets: Vec<(String, String)> = match workspace {
        Some(name) => vec![(namespace.to_owned(), name)],
        None => {
            let all: Vec<WorkspaceView> = client.get("/v1/workspaces").await?;
            all.into_iter()
                .filter(|w| w.cluster.is_some())
                .map(|w| (w.namespace, w.name))
                .collect()
        }
    };
    if targets.is_empty() {
        return Ok((
            "no workspace has a module with the workspace permission: nothing to check".into(),
            true,
        ));
    }
    let mut reports = Vec::with_capacity(targets.len());
    let all = targets.len() > 1;
    for (namespace, name) in targets {
        let path = object_path("workspaces", &namespace, &name, "/doctor")?;
        match client.get::<DoctorView>(&path).await {
            Ok(report) => reports.push(report),
            // One workspace that cannot be checked does not hide the others.
            Err(err @ ClientError::Refused { .. }) if all => reports.push(DoctorView {
                workspace: format!("{namespace}/{name}"),
                ok: false,
                checks: vec![CheckView {
                    name: CheckName::Route,
                    ok: false,
                    detail: err.to_string(),
                }],
            }),
            Err(err) => return Err(err),
        }
    }
    let ok = reports.iter().all(|r| r.ok);
    let text = structured(format, &reports).unwrap_or_else(|| render(&reports));
    Ok((text, ok))
}

fn render(reports: &[DoctorView]) -> String {
    let mut out = String::new();
    for report in reports {
        out.push_str(&format!("workspace {}\n", report.workspace));
        for check in &report.checks {
            let mark = if check.ok { "ok" } else { "FAILED" };
            out.push_str(&format!(
                "  {:<8} {:<6} {}\n",
                check.name, mark, check.detail
            ));
        }
    }
    out.trim_end().to_owned()
}
