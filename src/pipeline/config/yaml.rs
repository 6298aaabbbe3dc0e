//! YAML values read as the JSON Schema of their setting says: YAML scalars are text until a type
//! is known, so `batch_rows: 64` becomes a number and `shard: 0/1` stays a string, and a wrong
//! type is named at its value before serde sees it.

use marked_yaml::Node;

use super::parse::is_null;

/// Follows `$ref`s into the schema's definitions.
pub(super) fn resolve<'s>(
    schema: &'s serde_json::Value,
    defs: &'s serde_json::Value,
) -> &'s serde_json::Value {
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => resolve(&defs[name], defs),
        None => schema,
    }
}

/// The JSON types a schema admits (through `anyOf` / `oneOf`), and its allowed constants.
fn admits(
    schema: &serde_json::Value,
    defs: &serde_json::Value,
    out: &mut (Vec<String>, Vec<String>),
) {
    let schema = resolve(schema, defs);
    match &schema["type"] {
        serde_json::Value::String(t) => out.0.push(t.clone()),
        serde_json::Value::Array(ts) => out
            .0
            .extend(ts.iter().filter_map(|t| t.as_str().map(String::from))),
        _ => {}
    }
    if let Some(values) = schema["enum"].as_array() {
        out.1
            .extend(values.iter().filter_map(|v| v.as_str().map(String::from)));
    }
    if let Some(c) = schema["const"].as_str() {
        out.1.push(c.to_string());
        out.0.push("string".into());
    }
    for key in ["anyOf", "oneOf"] {
        for alternative in schema[key].as_array().into_iter().flatten() {
            admits(alternative, defs, out);
        }
    }
}

/// A YAML node as the JSON value `schema` wants; `Err` says what was expected.
pub(super) fn to_json(
    node: &Node,
    schema: &serde_json::Value,
    defs: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let mut found = (Vec::new(), Vec::new());
    admits(schema, defs, &mut found);
    let (types, consts) = found;
    let wants = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    match node {
        Node::Sequence(items) => {
            if !wants("array") {
                return Err("expected a single value, not a list".into());
            }
            let item = resolve(&schema["items"], defs);
            items
                .iter()
                .map(|n| to_json(n, item, defs))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Node::Mapping(map) => {
            if !wants("object") {
                return Err("expected a single value, not a mapping".into());
            }
            let mut object = serde_json::Map::new();
            for (k, v) in map.iter() {
                let prop = resolve(&schema["properties"][k.as_str()], defs);
                object.insert(k.as_str().to_string(), to_json(v, prop, defs)?);
            }
            Ok(Value::Object(object))
        }
        Node::Scalar(scalar) => {
            let text = scalar.as_str();
            if is_null(node) && wants("null") {
                return Ok(Value::Null);
            }
            if wants("boolean") {
                match text {
                    "true" => return Ok(Value::Bool(true)),
                    "false" => return Ok(Value::Bool(false)),
                    _ if types.len() == 1 => return Err("expected true or false".into()),
                    _ => {}
                }
            }
            let unsigned = schema["minimum"].as_f64().is_some_and(|m| m >= 0.0)
                || schema["format"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("uint"));
            if wants("integer") && !types.is_empty() {
                match (text.parse::<u64>(), text.parse::<i64>()) {
                    (Ok(n), _) => return Ok(Value::from(n)),
                    (_, Ok(n)) if !unsigned => return Ok(Value::from(n)),
                    _ if !types.iter().any(|t| t == "number" || t == "string") => {
                        return Err(if unsigned {
                            "expected a whole number >= 0".into()
                        } else {
                            "expected a whole number".into()
                        })
                    }
                    _ => {}
                }
            }
            if wants("number") && !types.is_empty() {
                match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => return Ok(Value::from(x)),
                    _ if !types.iter().any(|t| t == "string") => {
                        return Err("expected a number".into())
                    }
                    _ => {}
                }
            }
            if types.is_empty() {
                // no schema to go by: YAML's own reading
                return Ok(match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => text
                        .parse::<i64>()
                        .map(Value::from)
                        .or_else(|_| text.parse::<f64>().map(Value::from))
                        .unwrap_or_else(|_| Value::String(text.to_string())),
                });
            }
            if !wants("string") {
                return Err(format!("expected {}", types.join(" or ")));
            }
            if !consts.is_empty() && !consts.iter().any(|c| c == text) {
                return Err(format!("expected one of: {}", consts.join(", ")));
            }
            Ok(Value::String(text.to_string()))
        }
    }
}
