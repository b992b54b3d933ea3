//! The three PATCH flavours the API server accepts for built-in types: RFC 6902 JSON patch,
//! RFC 7386 merge patch, and (a subset of) strategic merge patch.

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` removes, everything else (lists too) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Strategic merge patch, as far as pods need it: objects merge; lists of objects that have a
/// `name` (containers, ephemeralContainers, ports…) merge by name, a new element going FIRST
/// (what the real server does with `spec.ephemeralContainers`), `{"name":…,"$patch":"delete"}`
/// removes one; other lists replace. Other `$` directives (`$setElementOrder/…`, `$retainKeys`)
/// are ignored.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Array(items) if is_named_list(items) => {
                let cur = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                if !cur.is_array() {
                    *cur = Value::Array(Vec::new());
                }
                let Value::Array(cur) = cur else { continue };
                let mut added = Vec::new();
                for item in items {
                    let name = item.get("name");
                    let pos = cur.iter().position(|c| c.get("name") == name);
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            cur.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic_merge_patch(&mut cur[i], item),
                        (None, false) => {
                            let mut new = Value::Object(Map::new());
                            strategic_merge_patch(&mut new, item);
                            added.push(new);
                        }
                    }
                }
                added.append(cur);
                *cur = added;
            }
            _ => strategic_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v),
        }
    }
}

fn is_named_list(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Splits a JSON pointer into its parent pointer and last token.
fn split(path: &str) -> Result<(&str, String), String> {
    match path.rfind('/') {
        Some(i) => Ok((&path[..i], unescape(&path[i + 1..]))),
        None => Err(format!("invalid JSON pointer {path:?}")),
    }
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| format!("add operation: index {last:?} out of range"))?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path:?}");
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// RFC 6902: add, remove, replace, move, copy, test. Errors read like the real server's
/// (evanphx/json-patch) where it matters little.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("json patch must be a list of operations")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let from = op.get("from").and_then(Value::as_str).unwrap_or("");
        let value = op.get("value").cloned();
        match kind {
            "add" => add(doc, path, value.ok_or("add operation: missing value")?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path).map_err(|_| {
                    format!("replace operation does not apply: doc is missing key: {path}")
                })?;
                add(doc, path, value.ok_or("replace operation: missing value")?)?;
            }
            "move" => {
                let v = remove(doc, from)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("copy operation: missing from path {from:?}"))?;
                add(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != value.as_ref() {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

/// Applies `patch` to `target` as the request's media type says (strategic merge, JSON merge
/// or JSON patch); Err: the answer for an unknown media type (415) or a failing JSON patch.
pub fn apply(
    content_type: &str,
    target: &mut Value,
    patch: &Value,
) -> Result<(), Box<super::respond::Resp>> {
    use super::respond::{respond, status_body};
    use hyper::StatusCode;
    let media = content_type.split(';').next().unwrap_or("").trim();
    let applied = match media {
        "application/strategic-merge-patch+json" => {
            strategic_merge_patch(target, patch);
            Ok(())
        }
        "application/merge-patch+json" => {
            merge_patch(target, patch);
            Ok(())
        }
        "application/json-patch+json" => json_patch(target, patch),
        _ => {
            return Err(Box::new(respond(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "application/json",
                status_body(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
                    None,
                ),
            )))
        }
    };
    applied.map_err(|e| {
        Box::new(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            status_body(500, "InternalError", &e, None),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smp_prepends_new_named_items_and_merges_existing() {
        let mut pod = json!({"spec": {"ephemeralContainers": [{"name": "a", "image": "x"}]}});
        strategic_merge_patch(
            &mut pod,
            &json!({"spec": {"ephemeralContainers": [{"name": "b", "image": "y"}, {"name": "a", "stdin": true}]}}),
        );
        assert_eq!(
            pod,
            json!({"spec": {"ephemeralContainers": [{"name": "b", "image": "y"}, {"name": "a", "image": "x", "stdin": true}]}})
        );
        strategic_merge_patch(
            &mut pod,
            &json!({"spec": {"ephemeralContainers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(
            pod["spec"]["ephemeralContainers"].as_array().map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": [1, 2], "b": {"c": 1}});
        json_patch(
            &mut d,
            &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "remove", "path": "/b/c"},
                {"op": "replace", "path": "/a/0", "value": 0}, {"op": "copy", "from": "/a", "path": "/d"},
                {"op": "test", "path": "/d/2", "value": 3}]),
        )
        .expect("patch");
        assert_eq!(d, json!({"a": [0, 2, 3], "b": {}, "d": [0, 2, 3]}));
        assert!(json_patch(&mut d, &json!([{"op": "remove", "path": "/zz"}])).is_err());
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/a/0", "value": 9}])).is_err());
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let mut d = json!({"a": [1], "b": {"c": 1, "d": 2}});
        merge_patch(&mut d, &json!({"a": [2], "b": {"c": null}}));
        assert_eq!(d, json!({"a": [2], "b": {"d": 2}}));
    }
}
