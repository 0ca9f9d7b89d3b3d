//! The lifecycle calls of a Custom module, as the store records them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Install,
    Uninstall,
    Sleep,
    Resume,
}

impl Operation {
    /// `install` for `POST /install`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Install => "install",
            Operation::Uninstall => "uninstall",
            Operation::Sleep => "sleep",
            Operation::Resume => "resume",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Operation::Install => "/install",
            Operation::Uninstall => "/uninstall",
            Operation::Sleep => "/sleep",
            Operation::Resume => "/resume",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "install" => Operation::Install,
            "uninstall" => Operation::Uninstall,
            "sleep" => Operation::Sleep,
            "resume" => Operation::Resume,
            other => return Err(format!("unknown operation {other:?}")),
        })
    }
}
