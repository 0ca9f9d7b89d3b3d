//! Semantic versions and the constraint language of `supportedOperatorVersion`
//! (Masterminds/semver, as the Forkspacer operator read it): terms separated
//! by commas or spaces must all hold, `||` separates alternatives; `=`, `!=`,
//! `>`, `>=`, `<`, `<=`, `~`, `~>`, `^`, wildcards (`x`, `X`, `*`, or missing
//! parts), hyphen ranges (`1.2 - 1.4.5`) and a leading `v` are understood. A
//! bare full version (`1.2.3`) means exactly that version; a bare partial one
//! (`1.2`) means any patch of it.

use std::cmp::Ordering;
use std::fmt;

/// The operator version forklet stands in for when a definition says which
/// operators it supports: the last Forkspacer release that ran `kind: Custom`
/// definitions from `spec.source`.
pub const OPERATOR_COMPATIBILITY: Version = Version {
    major: 0,
    minor: 1,
    patch: 20,
    pre: Vec::new(),
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Pre-release identifiers (`1.0.0-rc.1` → `["rc", "1"]`).
    pub pre: Vec<String>,
}

impl Version {
    const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    /// A full `MAJOR.MINOR.PATCH[-pre][+build]`, optionally with a leading `v`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let not_semver = || format!("{text:?} is not a semantic version (expected e.g. 1.0.0)");
        let partial = Partial::parse(text).map_err(|_| not_semver())?;
        match (partial.major, partial.minor, partial.patch) {
            (Some(major), Some(minor), Some(patch)) => Ok(Self {
                major,
                minor,
                patch,
                pre: partial.pre,
            }),
            _ => Err(not_semver()),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| compare_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

/// A release sorts after its pre-releases; identifiers compare numerically
/// when both are numbers, else as text, and numbers sort first.
fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// A version in a constraint, where parts may be missing or wildcards.
#[derive(Debug, Clone, PartialEq)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<String>,
}

impl Partial {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a version");
        let core = text.strip_prefix('v').unwrap_or(text);
        let core = core.split_once('+').map_or(core, |(core, _build)| core);
        let (core, pre) = match core.split_once('-') {
            Some((core, pre)) => {
                let ids: Vec<String> = pre.split('.').map(str::to_owned).collect();
                let valid = |id: &String| {
                    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                };
                if !ids.iter().all(valid) {
                    return Err(bad());
                }
                (core, ids)
            }
            None => (core, Vec::new()),
        };
        let mut parts = [None; 3];
        let mut wildcard = false;
        let pieces: Vec<&str> = core.split('.').collect();
        if pieces.is_empty() || pieces.len() > 3 {
            return Err(bad());
        }
        for (slot, piece) in parts.iter_mut().zip(&pieces) {
            if matches!(*piece, "x" | "X" | "*") {
                wildcard = true;
            } else if wildcard || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                // `1.x.3` is not a version; neither is `1..2`.
                return Err(bad());
            } else {
                *slot = Some(piece.parse().map_err(|_| bad())?);
            }
        }
        Ok(Self {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
            pre,
        })
    }

    fn is_full(&self) -> bool {
        self.patch.is_some()
    }

    /// The lowest version this partial covers.
    fn floor(&self) -> Version {
        Version {
            major: self.major.unwrap_or(0),
            minor: self.minor.unwrap_or(0),
            patch: self.patch.unwrap_or(0),
            pre: self.pre.clone(),
        }
    }

    /// The first version after everything this partial covers, if bounded.
    fn ceiling(&self) -> Option<Version> {
        match (self.major, self.minor, self.patch) {
            (None, _, _) => None,
            (Some(major), None, _) => Some(Version::new(major + 1, 0, 0)),
            (Some(major), Some(minor), None) => Some(Version::new(major, minor + 1, 0)),
            (Some(major), Some(minor), Some(patch)) => Some(Version::new(major, minor, patch + 1)),
        }
    }
}

/// `[low, high)`; `None` on either side is unbounded.
#[derive(Debug, Clone, PartialEq)]
struct Range {
    low: Option<(Version, bool)>, // (bound, inclusive)
    high: Option<(Version, bool)>,
    /// `!=`: everything but this range.
    negated: bool,
}

impl Range {
    fn between(low: Option<Version>, high: Option<Version>) -> Self {
        Self {
            low: low.map(|v| (v, true)),
            high: high.map(|v| (v, false)),
            negated: false,
        }
    }

    fn contains(&self, v: &Version) -> bool {
        let above = match &self.low {
            None => true,
            Some((low, true)) => v >= low,
            Some((low, false)) => v > low,
        };
        let below = match &self.high {
            None => true,
            Some((high, true)) => v <= high,
            Some((high, false)) => v < high,
        };
        (above && below) != self.negated
    }
}

/// A parsed `supportedOperatorVersion`.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// Alternatives (`||`), each a set of ranges that must all hold.
    alternatives: Vec<Vec<Range>>,
}

const OPERATORS: [&str; 9] = ["=", "!=", ">", ">=", "<", "<=", "~", "~>", "^"];

impl Constraint {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let words: Vec<&str> = alternative
                .split([',', ' ', '\t'])
                .filter(|w| !w.is_empty())
                .collect();
            if words.is_empty() {
                return Err(format!("{text:?}: an empty alternative"));
            }
            let mut ranges = Vec::new();
            let mut i = 0;
            while i < words.len() {
                // `>= 1.0` and `>=1.0` are the same term.
                let is_operator = words[i].chars().all(|c| "=!<>~^".contains(c));
                let (term, used) = if is_operator {
                    let version = words
                        .get(i + 1)
                        .ok_or_else(|| format!("{text:?}: {} needs a version", words[i]))?;
                    (format!("{}{version}", words[i]), 2)
                } else {
                    (words[i].to_owned(), 1)
                };
                if words.get(i + used) == Some(&"-") {
                    let upper = words
                        .get(i + used + 1)
                        .ok_or_else(|| format!("{text:?}: a range needs an upper end"))?;
                    ranges.push(hyphen(&term, upper).map_err(|e| format!("{text:?}: {e}"))?);
                    i += used + 2;
                } else {
                    ranges.push(term_range(&term).map_err(|e| format!("{text:?}: {e}"))?);
                    i += used;
                }
            }
            alternatives.push(ranges);
        }
        Ok(Self { alternatives })
    }

    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives
            .iter()
            .any(|ranges| ranges.iter().all(|r| r.contains(version)))
    }
}

fn hyphen(low: &str, high: &str) -> Result<Range, String> {
    let low = Partial::parse(low)?;
    let high = Partial::parse(high)?;
    let upper = if high.is_full() {
        Some((high.floor(), true))
    } else {
        high.ceiling().map(|v| (v, false))
    };
    Ok(Range {
        low: Some((low.floor(), true)),
        high: upper,
        negated: false,
    })
}

fn term_range(term: &str) -> Result<Range, String> {
    let split = term
        .find(|c: char| c.is_ascii_alphanumeric() || c == '*')
        .ok_or_else(|| format!("{term:?} has no version"))?;
    let (op, version) = term.split_at(split);
    let v = Partial::parse(version)?;
    let range = match op {
        // A full version means exactly it; a partial one, everything it covers.
        "" | "=" if v.is_full() => Range {
            low: Some((v.floor(), true)),
            high: Some((v.floor(), true)),
            negated: false,
        },
        "" | "=" => Range::between(Some(v.floor()), v.ceiling()),
        "!=" => {
            let mut range = if v.is_full() {
                Range {
                    low: Some((v.floor(), true)),
                    high: Some((v.floor(), true)),
                    negated: false,
                }
            } else {
                Range::between(Some(v.floor()), v.ceiling())
            };
            range.negated = true;
            range
        }
        ">" if v.is_full() => Range {
            low: Some((v.floor(), false)),
            high: None,
            negated: false,
        },
        ">" => Range::between(v.ceiling(), None),
        ">=" => Range::between(Some(v.floor()), None),
        "<" => Range::between(None, Some(v.floor())),
        "<=" if v.is_full() => Range {
            low: None,
            high: Some((v.floor(), true)),
            negated: false,
        },
        "<=" => Range::between(None, v.ceiling()),
        "~" | "~>" => {
            let high = match (v.major, v.minor) {
                (Some(major), None) => Some(Version::new(major + 1, 0, 0)),
                (Some(major), Some(minor)) => Some(Version::new(major, minor + 1, 0)),
                (None, _) => None,
            };
            Range::between(Some(v.floor()), high)
        }
        "^" => {
            // The leftmost non-zero part may not change.
            let high = match (v.major, v.minor, v.patch) {
                (None, _, _) => None,
                (Some(major), _, _) if major > 0 => Some(Version::new(major + 1, 0, 0)),
                (Some(0), None, _) => Some(Version::new(1, 0, 0)),
                (Some(0), Some(minor), _) if minor > 0 => Some(Version::new(0, minor + 1, 0)),
                (Some(0), Some(0), None) => Some(Version::new(0, 1, 0)),
                (Some(0), Some(0), Some(patch)) => Some(Version::new(0, 0, patch + 1)),
                _ => unreachable!("every case is covered above"),
            };
            Range::between(Some(v.floor()), high)
        }
        other => {
            return Err(format!(
                "unknown operator {other:?} (expected one of {})",
                OPERATORS.join(" ")
            ));
        }
    };
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_parse_strictly_and_order_by_semver() {
        assert_eq!(v("v1.2.3"), Version::new(1, 2, 3));
        assert_eq!(v("1.0.0+build.5"), Version::new(1, 0, 0));
        for bad in ["1.2", "1", "x", "1.2.3.4", "a.b.c", "1.2.-3", "", "1.2.3-"] {
            assert!(Version::parse(bad).is_err(), "{bad} must be refused");
        }
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn constraints_follow_masterminds() {
        // (constraint, versions it admits, versions it refuses)
        let table: &[(&str, &[&str], &[&str])] = &[
            (
                ">= 0.0.0, < 1.0.0",
                &["0.0.0", "0.1.20", "0.99.0"],
                &["1.0.0", "2.0.0"],
            ),
            (">=0.1 <0.2", &["0.1.0", "0.1.99"], &["0.2.0", "0.0.9"]),
            ("1.2.3", &["1.2.3"], &["1.2.4", "1.2.2"]),
            ("=1.2.3", &["1.2.3"], &["1.2.4"]),
            ("v1.2.3", &["1.2.3"], &["1.3.0"]),
            ("1.2", &["1.2.0", "1.2.9"], &["1.3.0", "1.1.9"]),
            ("1.2.x", &["1.2.0", "1.2.9"], &["1.3.0"]),
            ("1.x", &["1.0.0", "1.9.9"], &["2.0.0", "0.9.0"]),
            ("*", &["0.0.0", "9.9.9"], &[]),
            ("!=1.2.3", &["1.2.4"], &["1.2.3"]),
            ("!=1.2.x", &["1.3.0"], &["1.2.5"]),
            (">1.2.3", &["1.2.4"], &["1.2.3"]),
            (">1.2", &["1.3.0"], &["1.2.9"]),
            ("<1.2.3", &["1.2.2"], &["1.2.3"]),
            ("<=1.2.3", &["1.2.3"], &["1.2.4"]),
            ("<=1.2", &["1.2.9"], &["1.3.0"]),
            ("~1.2.3", &["1.2.3", "1.2.9"], &["1.3.0", "1.2.2"]),
            ("~1.2", &["1.2.0", "1.2.9"], &["1.3.0"]),
            ("~1", &["1.0.0", "1.9.0"], &["2.0.0"]),
            ("~>1.2", &["1.2.5"], &["1.3.0"]),
            ("^1.2.3", &["1.2.3", "1.9.9"], &["2.0.0", "1.2.2"]),
            ("^0.2.3", &["0.2.3", "0.2.9"], &["0.3.0"]),
            ("^0.0.3", &["0.0.3"], &["0.0.4"]),
            ("^0", &["0.0.0", "0.9.9"], &["1.0.0"]),
            ("^0.0", &["0.0.9"], &["0.1.0"]),
            ("1.2 - 1.4.5", &["1.2.0", "1.4.5"], &["1.4.6", "1.1.9"]),
            ("1.2.3 - 1.4", &["1.4.9"], &["1.5.0", "1.2.2"]),
            (
                "<1.0 || >=2.0, <3",
                &["0.5.0", "2.5.0"],
                &["1.5.0", "3.0.0"],
            ),
            (">= 0.1.20", &["0.1.20"], &["0.1.19"]),
        ];
        for (text, admitted, refused) in table {
            let constraint = Constraint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for version in *admitted {
                assert!(constraint.matches(&v(version)), "{text} admits {version}");
            }
            for version in *refused {
                assert!(!constraint.matches(&v(version)), "{text} refuses {version}");
            }
        }
    }

    #[test]
    fn malformed_constraints_say_what_is_wrong() {
        for (text, message) in [
            ("", "\"\": an empty alternative"),
            (">=", "\">=\": >= needs a version"),
            ("1.0 ||", "\"1.0 ||\": an empty alternative"),
            (
                "=> 1.0",
                "\"=> 1.0\": unknown operator \"=>\" (expected one of = != > >= < <= ~ ~> ^)",
            ),
            (">= 1.x.3", "\">= 1.x.3\": \"1.x.3\" is not a version"),
            ("1.0 -", "\"1.0 -\": a range needs an upper end"),
        ] {
            assert_eq!(Constraint::parse(text).unwrap_err(), message, "{text}");
        }
    }
}
