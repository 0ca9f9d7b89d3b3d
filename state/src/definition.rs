//! The `kind: Custom` resource definition of `custom-resources.md`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::typed;
use crate::names::check_dns_label;
use crate::quantity::{cpu_shares, memory_bytes};
use crate::schema::{ConfigItem, check_schema};
use crate::version::{Constraint, OPERATOR_COMPATIBILITY, Version};

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

/// A problem in a definition: the field path below its root (`.spec.image`)
/// and what is wrong there.
pub type FieldError = (String, String);

/// Parses and checks a definition, reporting every problem found.
pub fn parse_definition(value: &Value) -> Result<CustomDefinition, Vec<FieldError>> {
    match value.get("kind").and_then(Value::as_str) {
        Some("Custom") => {}
        Some(other) => {
            return Err(vec![(
                ".kind".into(),
                format!("kind {other:?} is not supported by forklet (only Custom)"),
            )]);
        }
        None => return Err(vec![(".kind".into(), "missing (expected Custom)".into())]),
    }
    let definition: CustomDefinition = typed(value.clone()).map_err(|e| vec![e])?;
    let errors = check_definition(&definition);
    if errors.is_empty() {
        Ok(definition)
    } else {
        Err(errors)
    }
}

fn check_definition(definition: &CustomDefinition) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut check = |path: &str, result: Result<(), String>| {
        if let Err(message) = result {
            errors.push((path.to_owned(), message));
        }
    };
    let meta = &definition.metadata;
    check(".metadata.name", check_dns_label(&meta.name));
    check(".metadata.version", Version::parse(&meta.version).map(drop));
    check(
        ".metadata.supportedOperatorVersion",
        supports_forklet(&meta.supported_operator_version),
    );
    if let Some(usage) = &meta.resource_usage {
        if let Some(cpu) = &usage.cpu {
            check(".metadata.resource_usage.cpu", cpu_shares(cpu).map(drop));
        }
        if let Some(memory) = &usage.memory {
            check(
                ".metadata.resource_usage.memory",
                memory_bytes(memory).map(drop),
            );
        }
    }
    let image = &definition.spec.image;
    if image.is_empty() || image.contains(char::is_whitespace) {
        check(
            ".spec.image",
            Err(format!(
                "{image:?} is not an image reference (e.g. my-registry/my-module:v1.0.0)"
            )),
        );
    }
    for (i, secret) in definition.spec.image_pull_secrets.iter().enumerate() {
        check(
            &format!(".spec.imagePullSecrets[{i}]"),
            check_dns_label(secret),
        );
    }
    if let Some(items) = &definition.config {
        errors.extend(
            check_schema(items)
                .into_iter()
                .map(|(path, message)| (format!(".config{path}"), message)),
        );
    }
    errors
}

fn supports_forklet(text: &str) -> Result<(), String> {
    let constraint = Constraint::parse(text)?;
    if constraint.matches(&OPERATOR_COMPATIBILITY) {
        Ok(())
    } else {
        Err(format!(
            "{text:?} does not admit operator version {OPERATOR_COMPATIBILITY}, the version whose \
             definitions forklet runs"
        ))
    }
}

impl CustomDefinition {
    /// `resource_usage.cpu` as Docker CPU shares (checked at parse time).
    pub fn cpu_shares(&self) -> Option<i64> {
        let cpu = self.metadata.resource_usage.as_ref()?.cpu.as_ref()?;
        cpu_shares(cpu).ok()
    }

    /// `resource_usage.memory` as a Docker memory reservation in bytes.
    pub fn memory_reservation(&self) -> Option<i64> {
        let memory = self.metadata.resource_usage.as_ref()?.memory.as_ref()?;
        memory_bytes(memory).ok()
    }
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
            vec![(
                ".kind".into(),
                "kind \"Helm\" is not supported by forklet (only Custom)".into()
            )]
        );
    }

    fn definition(metadata: Value, spec: Value) -> Value {
        json!({"kind": "Custom", "metadata": metadata, "spec": spec})
    }

    fn errors(value: Value) -> Vec<String> {
        match parse_definition(&value) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|(path, message)| format!("{path}: {message}"))
                .collect(),
        }
    }

    #[test]
    fn field_errors_carry_their_path() {
        let spec = json!({"image": "i", "permissions": ["admin"]});
        let errors = errors(definition(
            json!({"name": "x", "version": "1.0.0", "supportedOperatorVersion": "*"}),
            spec,
        ));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(".spec.permissions[0]: unknown variant `admin`"),
            "{errors:?}"
        );
    }

    #[test]
    fn metadata_rules() {
        let spec = json!({"image": "i"});
        let ok = json!({"name": "m", "version": "1.0.0", "supportedOperatorVersion": ">= 0.0.0, < 1.0.0"});
        assert_eq!(
            errors(definition(ok.clone(), spec.clone())),
            Vec::<String>::new()
        );
        let cases = [
            (
                json!({"name": "My_Module"}),
                ".metadata.name: \"My_Module\" is not a DNS-1123 label",
            ),
            (
                json!({"version": "1.0"}),
                ".metadata.version: \"1.0\" is not a semantic version (expected e.g. 1.0.0)",
            ),
            (
                json!({"supportedOperatorVersion": ">= 1.0.0"}),
                ".metadata.supportedOperatorVersion: \">= 1.0.0\" does not admit operator version 0.1.20, the version whose definitions forklet runs",
            ),
            (
                json!({"supportedOperatorVersion": "=> 1"}),
                ".metadata.supportedOperatorVersion: \"=> 1\": unknown operator",
            ),
            (
                json!({"resource_usage": {"cpu": "lots"}}),
                ".metadata.resource_usage.cpu: \"lots\" is not a Kubernetes quantity",
            ),
            (
                json!({"resource_usage": {"memory": "512MB"}}),
                ".metadata.resource_usage.memory: \"512MB\" is not a Kubernetes quantity",
            ),
            (
                json!({"colour": "blue"}),
                ".metadata.colour: unknown field `colour`",
            ),
        ];
        for (patch, expected) in cases {
            let mut metadata = ok.clone();
            for (k, v) in patch.as_object().unwrap() {
                metadata[k] = v.clone();
            }
            let errors = errors(definition(metadata, spec.clone()));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with(expected),
                "{} does not start with {expected}",
                errors[0]
            );
        }
    }

    #[test]
    fn spec_rules() {
        let meta = json!({"name": "m", "version": "1.0.0", "supportedOperatorVersion": "*"});
        assert_eq!(
            errors(definition(meta.clone(), json!({"image": "my registry/x"}))),
            vec![
                ".spec.image: \"my registry/x\" is not an image reference (e.g. my-registry/my-module:v1.0.0)"
            ]
        );
        assert_eq!(
            errors(definition(meta.clone(), json!({}))),
            vec![".spec: missing field `image`"]
        );
        let secret = errors(definition(
            meta,
            json!({"image": "i", "imagePullSecrets": ["Bad Name"]}),
        ));
        assert!(
            secret[0]
                .starts_with(".spec.imagePullSecrets[0]: \"Bad Name\" is not a DNS-1123 label"),
            "{secret:?}"
        );
    }

    #[test]
    fn resource_usage_means_docker_shares_and_reservation() {
        let meta = json!({"name": "m", "version": "1.0.0", "supportedOperatorVersion": "*", "resource_usage": {"cpu": "500m", "memory": "512Mi"}});
        let definition = parse_definition(&definition(meta, json!({"image": "i"}))).unwrap();
        assert_eq!(definition.cpu_shares(), Some(512));
        assert_eq!(definition.memory_reservation(), Some(512 << 20));
    }
}
