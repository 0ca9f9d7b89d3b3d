//! YAML documents as JSON values, read strictly: a key given twice in one
//! mapping is an error, never a silent last-one-wins.

use serde::Deserialize;
use serde_json::Value;

/// Each document of `text`, in order. After a document that fails, the
/// stream cannot be resynchronised, so reading stops there.
pub fn documents(text: &str) -> impl Iterator<Item = Result<Value, String>> + '_ {
    let mut failed = false;
    serde_yaml::Deserializer::from_str(text).map_while(move |document| {
        if failed {
            return None;
        }
        // Through YAML's own value first: it refuses duplicate keys, which
        // a JSON map would swallow.
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|err| err.to_string())
            .and_then(|yaml| serde_json::to_value(yaml).map_err(|err| err.to_string()));
        failed = value.is_err();
        Some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_read_in_order() {
        let read: Vec<_> = documents("a: 1\n---\nb: [x]\n").collect();
        assert_eq!(read, vec![Ok(json!({"a": 1})), Ok(json!({"b": ["x"]}))]);
    }

    #[test]
    fn a_duplicate_key_is_an_error_even_when_nested() {
        for text in [
            "a: 1\na: 2\n",
            "spec:\n  hibernated: true\n  hibernated: false\n",
        ] {
            let read: Vec<_> = documents(text).collect();
            assert_eq!(read.len(), 1);
            let err = read[0].as_ref().unwrap_err();
            assert!(err.contains("duplicate entry with key"), "{err}");
        }
    }

    #[test]
    fn reading_stops_after_a_broken_document() {
        let read: Vec<_> = documents("a: [\n---\nb: 1\n").collect();
        assert_eq!(read.len(), 1);
        assert!(read[0].is_err());
    }
}
