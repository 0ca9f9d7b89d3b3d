//! The `kind: Custom` resource definition of `custom-resources.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::typed;
use crate::schema::ConfigItem;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomDefinition {
    /// Optional: the seed's definitions carry none, files in the wild may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub kind: String,
    pub metadata: DefinitionMeta,
    /// `None` (no `config` list) means the Module's config is taken as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Vec<ConfigItem>>,
    pub spec: CustomSpec,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefinitionMeta {
    pub name: String,
    pub version: String,
    pub supported_operator_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// An icon URL, not the module image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        rename = "resource_usage",
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_usage: Option<ResourceUsage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceUsage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// The workspace's kubeconfig is mounted into the runner.
    Workspace,
    /// The runner gets the daemon's control API.
    Controller,
}

impl CustomSpec {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// Parses an embedded definition; errors carry the field path below the
/// definition's root (e.g. `.spec.image`).
pub fn parse_definition(value: &Value) -> Result<CustomDefinition, (String, String)> {
    match value.get("kind").and_then(Value::as_str) {
        Some("Custom") => {}
        Some(other) => {
            return Err((
                ".kind".into(),
                format!("kind {other:?} is not supported by forklet (only Custom)"),
            ));
        }
        None => return Err((".kind".into(), "missing (expected Custom)".into())),
    }
    let definition: CustomDefinition = typed(value.clone())?;
    if definition.spec.image.trim().is_empty() {
        return Err((".spec.image".into(), "must name an image".into()));
    }
    Ok(definition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seeds_embedded_definition_parses() {
        let definition = parse_definition(&json!({
            "kind": "Custom",
            "metadata": {"name": "app-installer", "version": "1.0.0", "supportedOperatorVersion": ">= 0.0.0, < 1.0.0"},
            "spec": {"image": "my-registry/app-installer:v1.0.0"}
        }))
        .unwrap();
        assert_eq!(definition.spec.image, "my-registry/app-installer:v1.0.0");
        assert_eq!(definition.config, None);
        assert!(!definition.spec.has(Permission::Workspace));
    }

    #[test]
    fn other_kinds_are_refused_by_name() {
        let err = parse_definition(&json!({"kind": "Helm"})).unwrap_err();
        assert_eq!(
            err,
            (
                ".kind".into(),
                "kind \"Helm\" is not supported by forklet (only Custom)".into()
            )
        );
    }

    #[test]
    fn field_errors_carry_their_path() {
        let err = parse_definition(&json!({
            "kind": "Custom",
            "metadata": {"name": "x", "version": "1.0.0", "supportedOperatorVersion": "*"},
            "spec": {"image": "i", "permissions": ["admin"]}
        }))
        .unwrap_err();
        assert_eq!(err.0, ".spec.permissions[0]");
        assert!(err.1.contains("unknown variant `admin`"), "{}", err.1);
    }
}
