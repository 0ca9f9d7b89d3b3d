//! A problem found in a manifest, worded so the user can find and fix it:
//! `FILE: KIND NAMESPACE/NAME: FIELD: MESSAGE`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{Kind, ObjectKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub file: PathBuf,
    /// The document, when it got far enough to be named.
    pub kind: Option<Kind>,
    /// `{"namespace": ..., "name": ...}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub object: Option<ObjectKey>,
    /// Dotted path of the field at fault, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// A problem with the file or a document too broken to be named.
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            kind: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn document(
        file: &Path,
        kind: Kind,
        object: &ObjectKey,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let field: String = field.into();
        Self {
            file: file.to_owned(),
            kind: Some(kind),
            object: Some(object.clone()),
            field: (!field.is_empty()).then_some(field),
            message: message.into(),
        }
    }

    /// The same problem without the file and document, for showing on the
    /// object itself.
    pub fn short(&self) -> String {
        match &self.field {
            Some(field) => format!("{}: {field}: {}", self.file.display(), self.message),
            None => format!("{}: {}", self.file.display(), self.message),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let (Some(kind), Some(object)) = (self.kind, &self.object) {
            write!(f, "{kind} {object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}
