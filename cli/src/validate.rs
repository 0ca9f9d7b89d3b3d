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

pub async fn run(files: &[Input], fetch: bool) -> Report {
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

fn read(input: &Input) -> ParsedFile {
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

pub fn render(report: &Report, format: Format) -> String {
    if let Some(text) = structured(format, report) {
        return text;
    }
    let mut lines: Vec<String> = report.problems.iter().map(Problem::to_string).collect();
    for skipped in &report.not_checked {
        lines.push(format!(
            "{}: Module {}: spec.source.httpURL: not checked: {} was not fetched (pass --fetch)",
            skipped.file.display(),
            skipped.module,
            skipped.url
        ));
    }
    let files = plural(report.files, "file");
    let objects = plural(report.objects, "object");
    lines.push(match report.problems.len() {
        0 => format!("{files}, {objects}: valid"),
        n => format!("{files}, {objects}: {}", plural(n, "problem")),
    });
    lines.join("\n")
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
