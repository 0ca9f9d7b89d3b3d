//! `forklet validate PATH...`: the daemon's own checks, offline. Nothing is
//! fetched unless `--fetch` is given; then `httpURL` definitions are fetched
//! and checked too.

use std::collections::HashMap;
use std::path::PathBuf;

use forklet_state::Problem;
use forklet_state::desired::DesiredState;
use forklet_state::fetch::Fetcher;
use forklet_state::manifest::{
    ParsedFile, check_link_inside, is_manifest_file, parse_file, read_manifest,
};
use forklet_state::source::{FetchedDefinitions, LocalDefinitions};
use serde::Serialize;

use crate::colour::{Paint, Tone};
use crate::table::{Format, structured};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub files: usize,
    pub objects: usize,
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// Modules whose `httpURL` definition was not fetched (no `--fetch`).
    pub not_checked: Vec<NotChecked>,
}

#[derive(Debug, Serialize)]
pub struct NotChecked {
    pub file: PathBuf,
    pub module: String,
    pub url: String,
}

/// A file to check, and the directory it was found in (read as the
/// daemon reads its manifests directory).
pub struct Input {
    pub file: PathBuf,
    pub dir: Option<PathBuf>,
}

/// A path that does not exist is a usage error, not an invalid manifest.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            // As the daemon reads a directory: its manifest files, not below;
            // what is not a regular file is reported, not skipped.
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_manifest_file(p) && !p.is_dir())
                .collect();
            found.sort();
            files.extend(found.into_iter().map(|file| Input {
                file,
                dir: Some(path.clone()),
            }));
        } else {
            files.push(Input {
                file: path.clone(),
                dir: None,
            });
        }
    }
    Ok(files)
}

pub async fn run(files: &[Input], fetch: bool, operator: bool) -> Report {
    let parsed: Vec<ParsedFile> = files.iter().map(read).collect();
    let mut state = DesiredState::build(&parsed, &LocalDefinitions);
    if fetch && !state.awaiting.is_empty() {
        let fetcher = Fetcher::default();
        let mut fetched = HashMap::new();
        for url in state.unfetched() {
            eprintln!("fetching {url}");
            fetched.insert(url.to_owned(), fetcher.fetch(url).await);
        }
        state = DesiredState::build(&parsed, &FetchedDefinitions(fetched));
    }
    if operator {
        state.problems.extend(crate::export::extensions(&parsed));
    }
    let objects = parsed.iter().map(|p| p.manifests.len()).sum();
    let not_checked = state
        .awaiting
        .iter()
        .map(|(key, url)| NotChecked {
            file: module_file(&parsed, key).unwrap_or_default(),
            module: key.to_string(),
            url: url.clone(),
        })
        .collect();
    Report {
        files: files.len(),
        objects,
        valid: state.problems.is_empty(),
        problems: state.problems,
        not_checked,
    }
}

pub fn read(input: &Input) -> ParsedFile {
    let file = &input.file;
    let text = match &input.dir {
        Some(dir) => check_link_inside(dir, file).and_then(|()| read_manifest(file)),
        None => read_manifest(file),
    };
    match text {
        Ok(text) => parse_file(file, &text),
        Err(problem) => ParsedFile {
            manifests: Vec::new(),
            problems: vec![*problem],
        },
    }
}

fn module_file(parsed: &[ParsedFile], key: &forklet_state::ObjectKey) -> Option<PathBuf> {
    parsed
        .iter()
        .flat_map(|p| &p.manifests)
        .find(|m| m.key() == key)
        .map(|m| m.file().to_owned())
}

/// The report as `format` asks; a table's problems in red, what was not
/// checked in yellow and the verdict in its colour, when `paint` colours.
pub fn render(report: &Report, format: Format, paint: Paint) -> String {
    if let Some(text) = structured(format, report) {
        return text;
    }
    let mut lines: Vec<String> = report
        .problems
        .iter()
        .map(|problem| paint.text(&problem.to_string(), Some(Tone::Bad)))
        .collect();
    for skipped in &report.not_checked {
        let line = format!(
            "{}: Module {}: spec.source.httpURL: not checked: {} was not fetched (pass --fetch)",
            skipped.file.display(),
            skipped.module,
            skipped.url
        );
        lines.push(paint.text(&line, Some(Tone::Unsettled)));
    }
    let files = plural(report.files, "file");
    let objects = plural(report.objects, "object");
    let verdict = match report.problems.len() {
        0 => paint.text("valid", Some(Tone::Good)),
        n => paint.text(&plural(n, "problem"), Some(Tone::Bad)),
    };
    lines.push(format!("{files}, {objects}: {verdict}"));
    lines.join("\n")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn report(problems: Vec<Problem>) -> Report {
        Report {
            files: 1,
            objects: 1,
            valid: problems.is_empty(),
            problems,
            not_checked: vec![NotChecked {
                file: "m.yaml".into(),
                module: "default/m".into(),
                url: "https://example.invalid/d.yaml".into(),
            }],
        }
    }

    #[test]
    fn problems_are_red_the_unchecked_yellow_and_colour_changes_no_word() {
        let broken = report(vec![Problem::file(Path::new("m.yaml"), "not YAML")]);
        let plain = render(&broken, Format::Table, Paint::Plain);
        let coloured = render(&broken, Format::Table, Paint::Colour);
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(lines[0].starts_with("\x1b[31mm.yaml") && lines[0].ends_with("\x1b[0m"));
        assert!(lines[1].starts_with("\x1b[33mm.yaml: Module default/m"));
        assert!(
            lines[2].ends_with(": \x1b[31m1 problem\x1b[0m"),
            "{coloured:?}"
        );
        assert_eq!(anstream::adapter::strip_str(&coloured).to_string(), plain);

        let fine = render(&report(Vec::new()), Format::Table, Paint::Colour);
        assert!(
            fine.ends_with("1 file, 1 object: \x1b[32mvalid\x1b[0m"),
            "{fine:?}"
        );
    }

    #[test]
    fn json_is_never_coloured() {
        let broken = report(vec![Problem::file(Path::new("m.yaml"), "not YAML")]);
        let json = render(&broken, Format::Json, Paint::Colour);
        assert!(!json.contains('\x1b'), "{json}");
    }
}
