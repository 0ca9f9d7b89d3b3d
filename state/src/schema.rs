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

impl ConfigType {
    fn as_str(self) -> &'static str {
        match self {
            ConfigType::String => "string",
            ConfigType::Integer => "integer",
            ConfigType::Float => "float",
            ConfigType::Boolean => "boolean",
            ConfigType::Option => "option",
            ConfigType::MultipleOptions => "multiple-options",
        }
    }
}

impl ItemSpec {
    /// `editable` left out means editable: only an explicit `false` locks a field.
    pub fn is_editable(&self) -> bool {
        self.editable != Some(false)
    }
}

/// Checks a definition's own schema: every problem as `([i].field, message)`.
pub fn check_schema(items: &[ConfigItem]) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        // Named as a user knows it, not only by its position.
        let label = match (item.alias.as_str(), item.name.as_str()) {
            ("", "") => format!("config item {i}"),
            (alias, name) if alias == name || name.is_empty() => format!("config item {alias}"),
            ("", name) => format!("config item ({name})"),
            (alias, name) => format!("config item {alias} ({name})"),
        };
        let mut error = |field: &str, message: String| {
            errors.push((format!("[{i}]{field}"), format!("{label}: {message}")))
        };
        if item.alias.is_empty() {
            error(".alias", "must not be empty".into());
        }
        if item.name.is_empty() {
            error(".name", "must not be empty".into());
        }
        if let Some(first) = items[..i]
            .iter()
            .position(|other| other.alias == item.alias)
        {
            error(
                ".alias",
                format!("'{}' is already the alias of config[{first}]", item.alias),
            );
        }
        let spec = &item.spec;
        let kind = item.kind;
        let numeric = matches!(
            kind,
            ConfigType::Integer | ConfigType::Float | ConfigType::MultipleOptions
        );
        let not_for = |field: &str| format!("{field} does not apply to type {}", kind.as_str());
        if spec.regex.is_some() && kind != ConfigType::String {
            error(".spec.regex", not_for("regex"));
        }
        if (spec.min.is_some() || spec.max.is_some()) && !numeric {
            error(".spec", not_for("min/max"));
        }
        match (kind, &spec.values) {
            (ConfigType::Option | ConfigType::MultipleOptions, None) => error(
                ".spec.values",
                format!("type {} needs a list of values", kind.as_str()),
            ),
            (ConfigType::Option | ConfigType::MultipleOptions, Some(values))
                if values.is_empty() =>
            {
                error(".spec.values", "must not be empty".into())
            }
            (ConfigType::Option | ConfigType::MultipleOptions, Some(_)) | (_, None) => {}
            (_, Some(_)) => error(".spec.values", not_for("values")),
        }
        let whole = |n: &Number| n.is_i64() || n.is_u64();
        if matches!(kind, ConfigType::Integer | ConfigType::MultipleOptions) {
            for (field, bound) in [(".spec.min", &spec.min), (".spec.max", &spec.max)] {
                if bound.as_ref().is_some_and(|n| !whole(n)) {
                    error(field, "must be a whole number".into());
                }
            }
        }
        if let (Some(min), Some(max)) = (&spec.min, &spec.max)
            && min.as_f64() > max.as_f64()
        {
            error(".spec", format!("min {min} is greater than max {max}"));
        }
        if let Some(pattern) = &spec.regex
            && let Err(err) = regex::Regex::new(pattern)
        {
            error(".spec.regex", format!("invalid regex: {err}"));
        }
        if let Some(default) = &spec.default {
            // Only meaningful once the spec itself is sound.
            if let Err(message) = check_value(item, default) {
                error(
                    ".spec.default",
                    format!("the default does not satisfy its own field: {message}"),
                );
            }
        } else if spec.required && !spec.is_editable() {
            error(
                ".spec",
                "a required field that is not editable needs a default".into(),
            );
        }
    }
    errors
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
            Some(value)
                if !item.spec.is_editable() && item.spec.default.as_ref() != Some(value) =>
            {
                errors.push((alias.clone(), format!("field '{alias}' is not editable")))
            }
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
    fn a_field_that_is_not_editable_keeps_its_default() {
        let schema: Vec<ConfigItem> = serde_json::from_value(json!([
            {"type": "string", "name": "a", "alias": "a", "spec": {"default": "fixed", "editable": false}}
        ]))
        .unwrap();
        let input = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            validate_config(Some(&schema), &input(json!({}))),
            Ok(input(json!({"a": "fixed"})))
        );
        assert_eq!(
            validate_config(Some(&schema), &input(json!({"a": "fixed"}))),
            Ok(input(json!({"a": "fixed"})))
        );
        assert_eq!(
            validate_config(Some(&schema), &input(json!({"a": "other"}))),
            Err(vec![("a".into(), "field 'a' is not editable".into())])
        );
    }

    #[test]
    fn the_seeds_schemas_are_sound() {
        assert_eq!(check_schema(&schema()), vec![]);
    }

    #[test]
    fn unsound_schemas_are_refused_with_the_item_and_field() {
        let cases = [
            (
                json!({"type": "integer", "name": "r", "alias": "r", "spec": {"default": 11, "max": 10}}),
                "[0].spec.default: config item r: the default does not satisfy its own field: value 11 is greater than maximum 10",
            ),
            (
                json!({"type": "option", "name": "e", "alias": "e", "spec": {"values": []}}),
                "[0].spec.values: config item e: must not be empty",
            ),
            (
                json!({"type": "option", "name": "e", "alias": "e"}),
                "[0].spec.values: config item e: type option needs a list of values",
            ),
            (
                json!({"type": "string", "name": "s", "alias": "s", "spec": {"regex": "(["}}),
                "[0].spec.regex: config item s: invalid regex",
            ),
            (
                json!({"type": "boolean", "name": "b", "alias": "b", "spec": {"regex": "x"}}),
                "[0].spec.regex: config item b: regex does not apply to type boolean",
            ),
            (
                json!({"type": "string", "name": "s", "alias": "s", "spec": {"min": 1}}),
                "[0].spec: config item s: min/max does not apply to type string",
            ),
            (
                json!({"type": "string", "name": "s", "alias": "s", "spec": {"values": ["a"]}}),
                "[0].spec.values: config item s: values does not apply to type string",
            ),
            (
                json!({"type": "integer", "name": "i", "alias": "i", "spec": {"min": 1.5}}),
                "[0].spec.min: config item i: must be a whole number",
            ),
            (
                json!({"type": "float", "name": "f", "alias": "f", "spec": {"min": 2, "max": 1}}),
                "[0].spec: config item f: min 2 is greater than max 1",
            ),
            (
                json!({"type": "string", "name": "s", "alias": "", "spec": {}}),
                "[0].alias: config item (s): must not be empty",
            ),
            (
                json!({"type": "string", "name": "s", "alias": "s", "spec": {"required": true, "editable": false}}),
                "[0].spec: config item s: a required field that is not editable needs a default",
            ),
        ];
        for (item, expected) in cases {
            let items: Vec<ConfigItem> = serde_json::from_value(json!([item])).unwrap();
            let errors: Vec<String> = check_schema(&items)
                .into_iter()
                .map(|(p, m)| format!("{p}: {m}"))
                .collect();
            assert_eq!(errors.len(), 1, "{item}: {errors:?}");
            assert!(
                errors[0].starts_with(expected),
                "{} does not start with {expected}",
                errors[0]
            );
        }
        let twice: Vec<ConfigItem> = serde_json::from_value(json!([
            {"type": "string", "name": "a", "alias": "x"}, {"type": "boolean", "name": "b", "alias": "x"}
        ]))
        .unwrap();
        assert_eq!(
            check_schema(&twice),
            vec![(
                "[1].alias".into(),
                "config item x (b): 'x' is already the alias of config[0]".into()
            )]
        );
    }

    #[test]
    fn no_schema_takes_config_as_given() {
        let input = json!({"anything": [1, 2]}).as_object().unwrap().clone();
        assert_eq!(validate_config(None, &input), Ok(input));
    }
}
