//! `forklet man [SUBCOMMAND...]`: the manual page, made from the same clap
//! definitions as `--help`. forklet(1) lists its subcommands as
//! forklet-get(1) and so on, as git's and cargo's pages do; each of those
//! is `forklet man get`.

#[derive(clap::Args)]
pub struct Args {
    /// A subcommand's page instead: `get` for forklet-get(1), `get modules`
    /// for forklet-get-modules(1).
    subcommand: Vec<String>,
}

/// The page as roff, or why there is none.
pub fn render(cli: clap::Command, args: &Args) -> Result<Vec<u8>, String> {
    // clap's `help` subcommand has no page of its own to point to.
    let mut page = cli.disable_help_subcommand(true);
    // Built first, so every subcommand knows its full name (forklet-get).
    page.build();
    let version = page.get_version().unwrap_or_default().to_owned();
    for name in &args.subcommand {
        let Some(sub) = page.find_subcommand(name).cloned() else {
            let known: Vec<&str> = page.get_subcommands().map(|s| s.get_name()).collect();
            let whose = page.get_bin_name().unwrap_or("forklet");
            return Err(match known.is_empty() {
                true => format!("{whose} has no subcommands"),
                false => format!("{whose} has no subcommand {name:?}: {}", known.join(", ")),
            });
        };
        page = sub;
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        // An empty date is written as nothing at all, which moves the source
        // and the manual one place left in `.TH`; a blank one keeps them put.
        .date(" ")
        .source(format!("forklet {version}"))
        .manual("forklet manual")
        .render(&mut out)
        .map_err(|err| format!("rendering the page: {err}"))?;
    Ok(out)
}
