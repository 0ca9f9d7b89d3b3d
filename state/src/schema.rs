//! The config schema of a Custom definition and the check of a Module's
//! config against it, with the operator's wording for each failure.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigItem {
    #[serde(rename = "type")]
    pub kind: ConfigType,
    /// For display; values are looked up by `alias`.
    pub name: String,
    pub alias: String,
    #[serde(default)]
    pub spec: ItemSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigType {
    String,
    Integer,
    Float,
    Boolean,
    Option,
    MultipleOptions,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSpec {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editable: Option<bool>,
}

/// Checks `input` against `schema` and returns the config a module receives:
/// the input with defaults applied. Every failure is reported, not just the
/// first, each as `(alias, message)`.
///
/// A definition without a `config` list takes the input as given.
pub fn validate_config(
    schema: Option<&[ConfigItem]>,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<(String, String)>> {
    let Some(schema) = schema else {
        return Ok(input.clone());
    };
    let mut errors = Vec::new();
    for key in input.keys() {
        if !schema.iter().any(|item| &item.alias == key) {
            errors.push((
                key.clone(),
                format!("unknown field '{key}' provided in input"),
            ));
        }
    }
    let mut output = Map::new();
    for item in schema {
        let alias = &item.alias;
        match input.get(alias) {
            Some(value) => match check_value(item, value) {
                Ok(()) => {
                    output.insert(alias.clone(), value.clone());
                }
                Err(message) => errors.push((
                    alias.clone(),
                    format!("validation failed for field '{alias}': {message}"),
                )),
            },
            // Required means the user must say it, even where a default exists.
            None if item.spec.required => errors.push((
                alias.clone(),
                format!("field '{alias}' is required but missing"),
            )),
            None => {
                if let Some(default) = &item.spec.default {
                    output.insert(alias.clone(), default.clone());
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(output)
    } else {
        Err(errors)
    }
}

fn check_value(item: &ConfigItem, value: &Value) -> Result<(), String> {
    let spec = &item.spec;
    match item.kind {
        ConfigType::String => {
            let text = value.as_str().ok_or_else(|| expected("a string", value))?;
            if let Some(pattern) = &spec.regex {
                // Unanchored, as RE2's MatchString; note that Rust's `\d` and
                // `\w` are Unicode-aware where RE2's are ASCII-only.
                let re = regex::Regex::new(pattern)
                    .map_err(|err| format!("invalid regex {pattern:?}: {err}"))?;
                if !re.is_match(text) {
                    return Err(format!("value {text:?} does not match regex {pattern:?}"));
                }
            }
            Ok(())
        }
        ConfigType::Integer => {
            if !(value.is_i64() || value.is_u64()) {
                return Err(expected("an integer", value));
            }
            check_range(value, spec)
        }
        ConfigType::Float => {
            if !value.is_number() {
                return Err(expected("a number", value));
            }
            check_range(value, spec)
        }
        ConfigType::Boolean => value
            .is_boolean()
            .then_some(())
            .ok_or_else(|| expected("a boolean", value)),
        ConfigType::Option => {
            let allowed = spec.values.as_deref().unwrap_or_default();
            if allowed.contains(value) {
                Ok(())
            } else {
                Err(not_allowed(value, allowed))
            }
        }
        ConfigType::MultipleOptions => {
            let chosen = value.as_array().ok_or_else(|| expected("a list", value))?;
            let allowed = spec.values.as_deref().unwrap_or_default();
            if let Some(bad) = chosen.iter().find(|v| !allowed.contains(v)) {
                return Err(not_allowed(bad, allowed));
            }
            let count = Value::from(chosen.len());
            check_range(&count, spec).map_err(|message| format!("number of selections: {message}"))
        }
    }
}

fn check_range(value: &Value, spec: &ItemSpec) -> Result<(), String> {
    let n = value.as_f64().unwrap_or_default();
    if let Some(min) = &spec.min
        && n < min.as_f64().unwrap_or(f64::MIN)
    {
        return Err(format!("value {value} is less than minimum {min}"));
    }
    if let Some(max) = &spec.max
        && n > max.as_f64().unwrap_or(f64::MAX)
    {
        return Err(format!("value {value} is greater than maximum {max}"));
    }
    Ok(())
}

fn expected(what: &str, value: &Value) -> String {
    format!("expected {what}, got {value}")
}

fn not_allowed(value: &Value, allowed: &[Value]) -> String {
    let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
    format!("value {value} is not one of [{}]", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The schema of the seed's "Complete Custom Module Example" plus one of
    /// each remaining type.
    fn schema() -> Vec<ConfigItem> {
        serde_json::from_value(json!([
            {"type": "option", "name": "environment", "alias": "env",
             "spec": {"required": true, "default": "development", "values": ["development", "staging", "production"], "editable": true}},
            {"type": "boolean", "name": "enableDebug", "alias": "debug", "spec": {"required": false, "default": false, "editable": true}},
            {"type": "string", "name": "namespace", "alias": "namespace", "spec": {"required": true, "default": "default", "editable": true}},
            {"type": "integer", "name": "replicas", "alias": "replicas", "spec": {"default": 1, "min": 1, "max": 10}},
            {"type": "float", "name": "ratio", "alias": "ratio", "spec": {"min": 0.5, "max": 1.5}},
            {"type": "string", "name": "team", "alias": "team", "spec": {"regex": "^[a-z]+$"}},
            {"type": "multiple-options", "name": "zones", "alias": "zones", "spec": {"values": ["a", "b", "c"], "max": 2}}
        ]))
        .unwrap()
    }

    fn check(input: Value) -> Result<Value, Vec<String>> {
        let input = input.as_object().unwrap().clone();
        validate_config(Some(&schema()), &input)
            .map(Value::Object)
            .map_err(|errors| errors.into_iter().map(|(_, message)| message).collect())
    }

    #[test]
    fn valid_config_gets_defaults_for_missing_optional_fields() {
        assert_eq!(
            check(json!({"env": "production", "namespace": "my-app"})),
            Ok(json!({"env": "production", "namespace": "my-app", "debug": false, "replicas": 1}))
        );
    }

    #[test]
    fn each_rule_has_its_message() {
        let cases = [
            (
                json!({"namespace": "n"}),
                "field 'env' is required but missing",
            ),
            (
                json!({"env": "production", "namespace": "n", "x": 1}),
                "unknown field 'x' provided in input",
            ),
            (
                json!({"env": "production", "namespace": "n", "replicas": 11}),
                "validation failed for field 'replicas': value 11 is greater than maximum 10",
            ),
            (
                json!({"env": "production", "namespace": "n", "replicas": 0}),
                "validation failed for field 'replicas': value 0 is less than minimum 1",
            ),
            (
                json!({"env": "production", "namespace": "n", "replicas": 2.5}),
                "validation failed for field 'replicas': expected an integer, got 2.5",
            ),
            (
                json!({"env": "qa", "namespace": "n"}),
                "validation failed for field 'env': value \"qa\" is not one of [\"development\", \"staging\", \"production\"]",
            ),
            (
                json!({"env": "production", "namespace": "n", "debug": "yes"}),
                "validation failed for field 'debug': expected a boolean, got \"yes\"",
            ),
            (
                json!({"env": "production", "namespace": "n", "team": "Ops"}),
                "validation failed for field 'team': value \"Ops\" does not match regex \"^[a-z]+$\"",
            ),
            (
                json!({"env": "production", "namespace": "n", "ratio": 2}),
                "validation failed for field 'ratio': value 2 is greater than maximum 1.5",
            ),
            (
                json!({"env": "production", "namespace": "n", "zones": ["a", "d"]}),
                "validation failed for field 'zones': value \"d\" is not one of [\"a\", \"b\", \"c\"]",
            ),
            (
                json!({"env": "production", "namespace": "n", "zones": ["a", "b", "c"]}),
                "validation failed for field 'zones': number of selections: value 3 is greater than maximum 2",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                check(input.clone()),
                Err(vec![message.to_owned()]),
                "input {input}"
            );
        }
    }

    #[test]
    fn all_failures_are_reported_together() {
        let errors = check(json!({"x": 1})).unwrap_err();
        assert_eq!(
            errors,
            vec![
                "unknown field 'x' provided in input",
                "field 'env' is required but missing",
                "field 'namespace' is required but missing",
            ]
        );
    }

    #[test]
    fn no_schema_takes_config_as_given() {
        let input = json!({"anything": [1, 2]}).as_object().unwrap().clone();
        assert_eq!(validate_config(None, &input), Ok(input));
    }
}
