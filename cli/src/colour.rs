//! Colour for people at a terminal, and for nobody else: never in a pipe or
//! a file, never with `NO_COLOR` (no-color.org), never with `TERM=dumb`.
//! `CLICOLOR_FORCE` asks for it anyway (bixense.com/clicolors), for a pager
//! such as `less -R`. Only tables are ever coloured: `-o json|yaml|name` are
//! for programs, whatever the environment says.

use std::ffi::OsString;
use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};

/// What a coloured word tells at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Ready, ok, valid.
    Good,
    /// Failed: something to act on.
    Bad,
    /// Asleep on purpose: not working, and not a problem either.
    Resting,
    /// Not settled yet: on its way to another phase, waiting for one, or
    /// not checked.
    Unsettled,
}

impl Tone {
    fn style(self) -> Style {
        let colour = match self {
            Tone::Good => AnsiColor::Green,
            Tone::Bad => AnsiColor::Red,
            Tone::Resting => AnsiColor::Blue,
            Tone::Unsettled => AnsiColor::Yellow,
        };
        Style::new().fg_color(Some(colour.into()))
    }
}

/// Whether text is coloured. Renderers take it as an argument, so that what
/// they print does not depend on where a test happens to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Plain,
    Colour,
}

impl Paint {
    /// For standard output, as it and this process's environment decide.
    pub fn stdout() -> Self {
        match wanted(std::io::stdout().is_terminal(), |name| {
            std::env::var_os(name)
        }) {
            true => Paint::Colour,
            false => Paint::Plain,
        }
    }

    /// `text` in the colour of `tone`; an empty text stays empty, so that a
    /// line's trailing blanks can still be trimmed.
    pub fn text(self, text: &str, tone: Option<Tone>) -> String {
        match (self, tone) {
            (Paint::Colour, Some(tone)) if !text.is_empty() => {
                let style = tone.style();
                format!("{style}{text}{style:#}")
            }
            _ => text.to_owned(),
        }
    }

    /// `text` padded to `width` columns, the padding outside the colour:
    /// escape codes take no column, so they must not count as any.
    pub fn padded(self, text: &str, width: usize, tone: Option<Tone>) -> String {
        let pad = width.saturating_sub(text.chars().count());
        format!("{}{}", self.text(text, tone), " ".repeat(pad))
    }
}

/// Whether to colour, given whether the output is a terminal and how to
/// read an environment variable. `NO_COLOR` wins over everything, as
/// no-color.org asks; an empty one is as good as unset.
pub fn wanted(terminal: bool, var: impl Fn(&str) -> Option<OsString>) -> bool {
    let set = |name: &str| var(name).is_some_and(|value| !value.is_empty());
    if set("NO_COLOR") {
        return false;
    }
    if set("CLICOLOR_FORCE") && var("CLICOLOR_FORCE").is_some_and(|value| value != "0") {
        return true;
    }
    terminal && var("TERM").is_none_or(|term| term != "dumb")
}

/// The colour of a module's or a workspace's phase. Phases are read here and
/// nowhere else, by their words (`ready`, `sleeped`, ...), so that callers
/// pass `phase.to_string()` whether the API types carry text or an enum.
pub fn phase_tone(phase: &str) -> Option<Tone> {
    match phase {
        "ready" => Some(Tone::Good),
        "failed" => Some(Tone::Bad),
        "sleeped" | "hibernated" => Some(Tone::Resting),
        "pending" | "installing" | "sleeping" | "resuming" | "uninstalling" => {
            Some(Tone::Unsettled)
        }
        // `deleted` (a row of `get -w`), and any phase newer than this CLI.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wanted` with only the variables in `vars` set.
    fn decide(terminal: bool, vars: &[(&str, &str)]) -> bool {
        wanted(terminal, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    #[test]
    fn a_terminal_gets_colour_unless_no_color_is_set() {
        assert!(decide(true, &[]));
        assert!(!decide(true, &[("NO_COLOR", "1")]));
        assert!(!decide(true, &[("NO_COLOR", "false")]), "any value counts");
        assert!(decide(true, &[("NO_COLOR", "")]), "empty is as if unset");
    }

    #[test]
    fn a_pipe_or_a_file_never_gets_colour_on_its_own() {
        assert!(!decide(false, &[]));
        assert!(!decide(false, &[("NO_COLOR", "1")]));
        assert!(!decide(false, &[("NO_COLOR", "")]));
    }

    #[test]
    fn clicolor_force_colours_a_pipe_but_never_beats_no_color() {
        assert!(decide(false, &[("CLICOLOR_FORCE", "1")]));
        assert!(!decide(false, &[("CLICOLOR_FORCE", "0")]));
        assert!(!decide(false, &[("CLICOLOR_FORCE", "")]));
        assert!(!decide(
            false,
            &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]
        ));
    }

    #[test]
    fn a_dumb_terminal_gets_no_colour() {
        assert!(!decide(true, &[("TERM", "dumb")]));
        assert!(decide(true, &[("TERM", "xterm-256color")]));
    }

    #[test]
    fn plain_paint_leaves_text_alone() {
        assert_eq!(Paint::Plain.text("ready", Some(Tone::Good)), "ready");
        assert_eq!(
            Paint::Plain.padded("ready", 8, Some(Tone::Good)),
            "ready   "
        );
    }

    #[test]
    fn colour_wraps_the_text_and_the_padding_follows_it() {
        assert_eq!(
            Paint::Colour.padded("failed", 8, Some(Tone::Bad)),
            "\x1b[31mfailed\x1b[0m  "
        );
        assert_eq!(Paint::Colour.text("", Some(Tone::Bad)), "");
        assert_eq!(Paint::Colour.text("deleted", None), "deleted");
    }

    #[test]
    fn phases_read_as_their_state() {
        assert_eq!(phase_tone("ready"), Some(Tone::Good));
        assert_eq!(phase_tone("failed"), Some(Tone::Bad));
        assert_eq!(phase_tone("sleeped"), Some(Tone::Resting));
        assert_eq!(phase_tone("hibernated"), Some(Tone::Resting));
        for busy in [
            "pending",
            "installing",
            "sleeping",
            "resuming",
            "uninstalling",
        ] {
            assert_eq!(phase_tone(busy), Some(Tone::Unsettled), "{busy}");
        }
        assert_eq!(phase_tone("deleted"), None);
    }
}
