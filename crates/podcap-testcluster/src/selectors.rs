//! Label and field selectors, as the API server parses them from `labelSelector=` and
//! `fieldSelector=`.
//!
//! Label selector grammar (k8s.io/apimachinery/pkg/labels): comma-separated requirements, each
//! `key`, `!key`, `key=v`, `key==v`, `key!=v`, `key in (a,b)`, `key notin (a,b)`, `key>n`,
//! `key<n`. `!=` and `notin` also match objects without the key. Field selectors: `f=v`,
//! `f==v`, `f!=v`, comma-separated, all must hold.

use std::collections::BTreeMap;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelReq {
    /// `key` (the label exists).
    Exists(String),
    /// `!key`.
    NotExists(String),
    /// `key=v` / `key==v` / `key in (…)`.
    In(String, Vec<String>),
    /// `key!=v` / `key notin (…)`.
    NotIn(String, Vec<String>),
    /// `key>n`.
    Gt(String, i64),
    /// `key<n`.
    Lt(String, i64),
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelReq>);

impl LabelSelector {
    /// Parses a label selector; the error is the message the API server puts in its 400 Status.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(s)? {
            let part = part.trim();
            if part.is_empty() {
                if s.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "unable to parse requirement: found '', expected: identifier in {s:?}"
                ));
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::Gt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelReq::Lt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "unable to parse requirement: unexpected ')' in {s:?}"
                    ));
                }
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!(
            "unable to parse requirement: found '', expected: ')' in {s:?}"
        ));
    }
    out.push(&s[start..]);
    Ok(out)
}

fn valid_key(k: &str) -> bool {
    // Qualified name: optional DNS prefix + '/', name of alphanumerics, '-', '_', '.'.
    let name = k.rsplit_once('/').map_or(k, |(_, n)| n);
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn key_checked(k: &str) -> Result<String, String> {
    if valid_key(k) {
        Ok(k.to_string())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key {k:?}"
        ))
    }
}

fn value_checked(v: &str) -> Result<String, String> {
    if valid_value(v) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label value: {v:?}"
        ))
    }
}

fn parse_requirement(p: &str) -> Result<LabelReq, String> {
    if let Some(k) = p.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key_checked(k.trim())?));
    }
    // Set-based: `key in (…)` / `key notin (…)`.
    if let Some(open) = p.find('(') {
        let head = p[..open].trim();
        let close = p
            .rfind(')')
            .filter(|c| *c > open && p[c + 1..].trim().is_empty())
            .ok_or_else(|| format!("unable to parse requirement: expected ')' in {p:?}"))?;
        let values = p[open + 1..close]
            .split(',')
            .map(|v| value_checked(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut words = head.split_whitespace();
        let (key, op) = match (words.next(), words.next(), words.next()) {
            (Some(k), Some(op), None) => (k, op),
            _ => {
                return Err(format!(
                    "unable to parse requirement: found '(', expected: 'in', 'notin' in {p:?}"
                ))
            }
        };
        let key = key_checked(key)?;
        return match op {
            "in" => Ok(LabelReq::In(key, values)),
            "notin" => Ok(LabelReq::NotIn(key, values)),
            other => Err(format!(
                "unable to parse requirement: found '{other}', expected: in, notin, =, ==, !=, gt, lt"
            )),
        };
    }
    for (op, len) in [("!=", 2), ("==", 2), ("=", 1), (">", 1), ("<", 1)] {
        if let Some(i) = p.find(op) {
            let key = key_checked(p[..i].trim())?;
            let val = p[i + len..].trim();
            return match op {
                "!=" => Ok(LabelReq::NotIn(key, vec![value_checked(val)?])),
                "=" | "==" => Ok(LabelReq::In(key, vec![value_checked(val)?])),
                _ => {
                    let n = val.parse::<i64>().map_err(|_| {
                        format!("unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer: {val:?}")
                    })?;
                    Ok(if op == ">" {
                        LabelReq::Gt(key, n)
                    } else {
                        LabelReq::Lt(key, n)
                    })
                }
            };
        }
    }
    Ok(LabelReq::Exists(key_checked(p.trim())?))
}

/// One field requirement: `field` equals (or, if `negate`, differs from) `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReq {
    /// Field path, e.g. `status.phase`.
    pub field: String,
    /// Compared value.
    pub value: String,
    /// `!=`.
    pub negate: bool,
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldReq>);

impl FieldSelector {
    /// Parses a field selector; unknown fields are checked later, per resource.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            reqs.push(FieldReq {
                field: field.trim().to_string(),
                value: value.trim().to_string(),
                negate,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether every requirement holds; `get` returns a field's value (None: unsupported
    /// field, reported by the caller before matching).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let v = get(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_all_forms() {
        let s = LabelSelector::parse("app=mando,x==y,a!=b,t in (a, b),u notin (c),k,!m,n>3,o<2")
            .expect("parse");
        assert_eq!(
            s.0,
            vec![
                LabelReq::In("app".into(), vec!["mando".into()]),
                LabelReq::In("x".into(), vec!["y".into()]),
                LabelReq::NotIn("a".into(), vec!["b".into()]),
                LabelReq::In("t".into(), vec!["a".into(), "b".into()]),
                LabelReq::NotIn("u".into(), vec!["c".into()]),
                LabelReq::Exists("k".into()),
                LabelReq::NotExists("m".into()),
                LabelReq::Gt("n".into(), 3),
                LabelReq::Lt("o".into(), 2),
            ]
        );
    }

    #[test]
    fn matching_semantics() {
        let l = labels(&[("app", "mando"), ("tier", "web")]);
        let m = |s: &str| LabelSelector::parse(s).expect("parse").matches(&l);
        assert!(m(""));
        assert!(m("app=mando"));
        assert!(m("app==mando,tier"));
        assert!(!m("app!=mando"));
        assert!(m("missing!=x"), "!= matches absent keys");
        assert!(m("missing notin (x)"), "notin matches absent keys");
        assert!(!m("missing in (x)"));
        assert!(m("app in (mando,other),tier notin (db)"));
        assert!(!m("tier notin (web)"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(!m("missing"));
        assert!(m("example.com/x!=1"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "app in (a",
            "app in a)",
            "a b c",
            "app=(x)",
            "=x",
            "app in",
            "x>y",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("status.phase=Running,metadata.name!=a").expect("parse");
        assert_eq!(f.0.len(), 2);
        let get = |name: &'static str| {
            move |field: &str| match field {
                "status.phase" => Some("Running".to_string()),
                "metadata.name" => Some(name.to_string()),
                _ => None,
            }
        };
        assert!(f.matches(get("b")));
        assert!(!f.matches(get("a")));
        assert!(FieldSelector::parse("spec.nodeName==node-1")
            .expect("parse")
            .matches(|_| Some("node-1".into())));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
