//! `forklet man [SUBCOMMAND...]`: manual pages in roff, made from the same
//! definitions as `--help`, that `man` renders without a complaint.

use std::process::Command;

/// `forklet man ARGS...`: exit code, stdout, stderr.
fn man_page(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forklet"))
        .arg("man")
        .args(args)
        .output()
        .expect("run forklet");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The page's `.TH` line: the first request after clap_mangen's two-line
/// preamble (which defines the apostrophe string `Aq`).
fn title(page: &str) -> &str {
    let mut requests = page
        .lines()
        .skip_while(|line| line.starts_with(".ie ") || line.starts_with(".el "));
    requests.next().unwrap_or_default()
}

/// `page` as `man -l` shows it, and what it said on stderr (groff's
/// warnings included); `None` where `man` is not installed.
fn rendered(page: &str) -> Option<(String, String)> {
    let installed = Command::new("sh")
        .args(["-c", "command -v man"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!("skipping the rendering: `man` is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forklet.1");
    std::fs::write(&file, page).unwrap();
    let out = Command::new("man")
        .arg("--warnings")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("run man");
    assert!(out.status.success(), "man -l failed: {out:?}");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some((text(&out.stdout), text(&out.stderr)))
}

#[test]
fn forklet_1_names_every_subcommand_and_man_renders_it() {
    let (code, page, _) = man_page(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        title(&page),
        format!(
            ".TH forklet 1 \" \" \"forklet {}\" \"forklet manual\"",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        page.contains("\n.SH NAME\nforklet \\- Drive forkletd"),
        "{page}"
    );
    for subcommand in [
        "get",
        "describe",
        "logs",
        "events",
        "validate",
        "completion",
        "man",
    ] {
        assert!(
            page.contains(&format!("forklet\\-{subcommand}(1)")),
            "forklet-{subcommand}(1) is not listed"
        );
    }
    assert!(
        !page.contains("forklet\\-help(1)"),
        "clap's help has no page"
    );
    // The environment a user sets is in the page, as in --help.
    assert!(page.contains("FORKLET_SOCKET"));
    assert!(page.contains("NO_COLOR"));

    let Some((shown, complaints)) = rendered(&page) else {
        return;
    };
    assert_eq!(complaints, "", "man (groff) warns");
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("forklet(1)") && lines[0].contains("forklet manual"));
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("forklet {}", env!("CARGO_PKG_VERSION"))),
        "the footer names the release: {shown}"
    );
    assert!(shown.contains("SUBCOMMANDS"), "{shown}");
    assert!(shown.contains("forklet-describe(1)"), "{shown}");
}

#[test]
fn a_subcommand_has_its_own_page_with_its_options() {
    let (code, page, _) = man_page(&["get"]);
    assert_eq!(code, Some(0));
    assert!(title(&page).starts_with(".TH forklet-get 1 "), "{page}");
    assert!(page.contains("\\fBforklet get\\fR"), "the synopsis: {page}");
    for value in ["table", "wide", "name", "json", "yaml"] {
        assert!(
            page.contains(&format!("{value}: ")),
            "-o {value} is not told"
        );
    }
    assert!(page.contains("forklet\\-get\\-modules(1)"), "{page}");
    if let Some((shown, complaints)) = rendered(&page) {
        assert_eq!(complaints, "", "man (groff) warns");
        assert!(shown.contains("--output"), "{shown}");
    }

    let (code, page, _) = man_page(&["get", "modules"]);
    assert_eq!(code, Some(0));
    assert!(
        title(&page).starts_with(".TH forklet-get-modules 1 "),
        "{page}"
    );
}

#[test]
fn an_unknown_subcommand_is_a_usage_error_that_lists_the_known_ones() {
    let (code, page, stderr) = man_page(&["nope"]);
    assert_eq!(code, Some(2));
    assert!(page.is_empty());
    assert!(
        stderr.starts_with("forklet: forklet has no subcommand \"nope\": get, sleep,"),
        "{stderr}"
    );
    let (code, _, stderr) = man_page(&["version", "x"]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.trim(), "forklet: forklet version has no subcommands");
}
