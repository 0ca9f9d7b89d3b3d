//! Kubernetes names, and the key every object is addressed by.
//!
//! Names become directories, container names, mounts and URL paths, so an
//! [`ObjectKey`] can only be built from names that passed these checks:
//! nothing downstream has to think about `..`, `/` or a stray separator.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest DNS-1123 label.
const LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain.
const SUBDOMAIN_MAX: usize = 253;

/// `text` quoted, cut short where it is far too long to be a name.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}… ({} bytes)", &text[..end], text.len()),
        None => format!("{text:?}"),
    }
}

/// A DNS-1123 label: what Kubernetes allows as a namespace.
pub fn check_dns_label(text: &str) -> Result<(), String> {
    if is_label(text) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending \
             with a letter or digit, at most {LABEL_MAX} characters)",
            quoted(text)
        ))
    }
}

/// A DNS-1123 subdomain: what Kubernetes allows as an object's name.
pub fn check_dns_subdomain(text: &str) -> Result<(), String> {
    if text.len() <= SUBDOMAIN_MAX && text.split('.').all(is_label) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', each \
             part starting and ending with a letter or digit, at most {SUBDOMAIN_MAX} characters)",
            quoted(text)
        ))
    }
}

/// A key of a secret's data, as Kubernetes allows: letters, digits, `-`,
/// `_` and `.`, at most 253 characters, and not `.` or `..`.
pub fn check_secret_key(text: &str) -> Result<(), String> {
    let chars_ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !text.is_empty() && text.len() <= SUBDOMAIN_MAX && chars_ok && text != "." && text != ".." {
        Ok(())
    } else {
        Err(format!(
            "{} is not a secret key (letters, digits, '-', '_' and '.', at most {SUBDOMAIN_MAX} \
             characters, not . or ..)",
            quoted(text)
        ))
    }
}

fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= LABEL_MAX
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Which half of a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("metadata.namespace: {0}")]
    Namespace(String),
    #[error("metadata.name: {0}")]
    Name(String),
}

impl NameError {
    /// The manifest field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            NameError::Namespace(_) => "metadata.namespace",
            NameError::Name(_) => "metadata.name",
        }
    }

    /// The reason, without the field.
    pub fn reason(&self) -> &str {
        match self {
            NameError::Namespace(reason) | NameError::Name(reason) => reason,
        }
    }
}

/// `namespace/name`: how every object is addressed. The namespace is a
/// DNS-1123 label and the name a DNS-1123 subdomain, so neither holds a
/// `/`, and `_` appears in neither: both are free to separate them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawKey")]
pub struct ObjectKey {
    namespace: String,
    name: String,
}

#[derive(Deserialize)]
struct RawKey {
    namespace: String,
    name: String,
}

impl TryFrom<RawKey> for ObjectKey {
    type Error = NameError;
    fn try_from(raw: RawKey) -> Result<Self, NameError> {
        ObjectKey::new(raw.namespace, raw.name)
    }
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, NameError> {
        let (namespace, name) = (namespace.into(), name.into());
        check_dns_label(&namespace).map_err(NameError::Namespace)?;
        check_dns_subdomain(&name).map_err(NameError::Name)?;
        Ok(Self { namespace, name })
    }

    /// Parses the `namespace/name` form that [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, name) = text.split_once('/')?;
        Self::new(namespace, name).ok()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "app-installer", "x1", &"a".repeat(63)] {
            assert_eq!(check_dns_label(good), Ok(()), "{good}");
        }
        for bad in ["", "App", "-a", "a-", "a_b", "a.b", "..", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_subdomains() {
        for good in ["a", "a.b", "web-1.team.example", &"a".repeat(63)] {
            assert_eq!(check_dns_subdomain(good), Ok(()), "{good}");
        }
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        for bad in [
            "", ".", "..", "../../x", "/etc", "a/b", "a..b", ".a", "a.", "A", "a_b", "a b", &long,
        ] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_name_far_too_long_is_not_echoed_whole() {
        let long = "x".repeat(70_000);
        let err = check_dns_subdomain(&long).unwrap_err();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert!(
            err.contains("… (70000 bytes) is not a DNS-1123 subdomain"),
            "{err}"
        );
    }

    #[test]
    fn a_key_holds_only_kubernetes_names() {
        assert_eq!(
            ObjectKey::new("..", "x").unwrap_err().field(),
            "metadata.namespace"
        );
        assert_eq!(
            ObjectKey::new("default", "../../x").unwrap_err().field(),
            "metadata.name"
        );
        assert_eq!(
            ObjectKey::new("default", "/abs").unwrap_err().field(),
            "metadata.name"
        );
        let key = ObjectKey::new("team", "web.v2").unwrap();
        assert_eq!(key.to_string(), "team/web.v2");
        assert_eq!(ObjectKey::parse("team/web.v2"), Some(key));
        assert_eq!(ObjectKey::parse("team/a/b"), None);
    }

    #[test]
    fn a_key_read_from_json_is_checked_too() {
        let good: ObjectKey = serde_json::from_str(r#"{"namespace":"a","name":"b"}"#).unwrap();
        assert_eq!(good.name(), "b");
        let bad = serde_json::from_str::<ObjectKey>(r#"{"namespace":"a","name":"../b"}"#);
        assert!(bad.is_err());
    }
}
