//! `forklet doctor [WORKSPACE]`: asks each workspace's API server for
//! `/version` the way its modules' runners reach it, and prints every step.

use forklet_state::api::{CheckName, CheckView, DoctorView, WorkspaceView};

use crate::client::{Client, ClientError, object_path};
use crate::colour::{Paint, Tone};
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
                    name: CheckName::Workspace,
                    ok: false,
                    detail: err.to_string(),
                }],
            }),
            Err(err) => return Err(err),
        }
    }
    let ok = reports.iter().all(|r| r.ok);
    let text = structured(format, &reports).unwrap_or_else(|| render(&reports, Paint::stdout()));
    Ok((text, ok))
}

fn render(reports: &[DoctorView], paint: Paint) -> String {
    let mut out = String::new();
    for report in reports {
        out.push_str(&format!("workspace {}\n", report.workspace));
        for check in &report.checks {
            let (mark, tone) = match check.ok {
                true => ("ok", Tone::Good),
                false => ("FAILED", Tone::Bad),
            };
            out.push_str(&format!(
                "  {:<8} {} {}\n",
                check.name,
                paint.padded(mark, 6, Some(tone)),
                check.detail
            ));
        }
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_coloured_and_the_details_stay_in_line() {
        let report = DoctorView {
            workspace: "default/dev".into(),
            ok: false,
            checks: vec![
                CheckView {
                    name: CheckName::Route,
                    ok: true,
                    detail: "direct".into(),
                },
                CheckView {
                    name: CheckName::Connect,
                    ok: false,
                    detail: "refused".into(),
                },
            ],
        };
        let plain = render(std::slice::from_ref(&report), Paint::Plain);
        assert_eq!(
            plain,
            "workspace default/dev\n  route    ok     direct\n  connect  FAILED refused"
        );
        let coloured = render(&[report], Paint::Colour);
        assert!(
            coloured.contains("\x1b[32mok\x1b[0m     direct"),
            "{coloured:?}"
        );
        assert!(
            coloured.contains("\x1b[31mFAILED\x1b[0m refused"),
            "{coloured:?}"
        );
        assert_eq!(anstream::adapter::strip_str(&coloured).to_string(), plain);
    }
}
