//! Label selectors as `kubectl get -l` sends them: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
//! `a notin (x)`, `a` (exists), `!a` (does not exist), `a>1`, `a<1`, joined by commas.

use std::collections::BTreeSet;

use serde_json::Value;

/// Why a selector string was refused; shown to the client in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

impl Requirement {
    /// Whether labels read through `get` (a key's value, if the object has it) match.
    fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.contains(x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::GreaterThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Requirement::LessThan(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        }
    }
}

/// A parsed selector: every requirement must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| r.matches(get))
    }

    /// As [`Self::matches`], for an object the watch cache holds.
    pub fn matches_attrs(&self, attrs: &crate::watch_cache::Attrs) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(|k| attrs.label(k)))
    }

    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_terms(input)? {
            let term = term.trim();
            if term.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(SelectorError(format!("empty requirement in {input:?}")));
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(Self { requirements })
    }
}

/// Splits on commas that are not inside a parenthesised value set.
fn split_terms(input: &str) -> Result<Vec<&str>, SelectorError> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(SelectorError(format!("unbalanced ')' in {input:?}")));
                }
            }
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError(format!("unbalanced '(' in {input:?}")));
    }
    terms.push(&input[start..]);
    Ok(terms)
}

fn parse_requirement(term: &str) -> Result<Requirement, SelectorError> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key.trim())?));
    }
    for (op, make) in [
        (
            "==",
            Requirement::Equals as fn(String, String) -> Requirement,
        ),
        ("!=", Requirement::NotEquals),
        ("=", Requirement::Equals),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            return Ok(make(key_of(k.trim())?, value_of(v.trim())?));
        }
    }
    for (op, greater) in [(">", true), ("<", false)] {
        if let Some((k, v)) = term.split_once(op) {
            let n: i64 = v.trim().parse().map_err(|_| {
                SelectorError(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {term:?}"
                ))
            })?;
            let k = key_of(k.trim())?;
            return Ok(if greater {
                Requirement::GreaterThan(k, n)
            } else {
                Requirement::LessThan(k, n)
            });
        }
    }
    if let Some(open) = term.find('(') {
        let head: Vec<&str> = term[..open].split_whitespace().collect();
        let [key, op] = head.as_slice() else {
            return Err(SelectorError(format!(
                "expected '<key> in|notin (...)', got {term:?}"
            )));
        };
        let rest = term[open + 1..].trim_end();
        let Some(inner) = rest.strip_suffix(')') else {
            return Err(SelectorError(format!(
                "expected ')' at the end of {term:?}"
            )));
        };
        let values = inner
            .split(',')
            .map(|v| value_of(v.trim()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let key = key_of(key)?;
        return match *op {
            "in" => {
                if values.is_empty() || values.contains("") && inner.trim().is_empty() {
                    return Err(SelectorError(format!(
                        "for 'in', 'notin' operators, values set can't be empty: {term:?}"
                    )));
                }
                Ok(Requirement::In(key, values))
            }
            "notin" => Ok(Requirement::NotIn(key, values)),
            other => Err(SelectorError(format!(
                "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
            ))),
        };
    }
    if term.split_whitespace().count() != 1 {
        return Err(SelectorError(format!("found unexpected text in {term:?}")));
    }
    Ok(Requirement::Exists(key_of(term)?))
}

/// A label key: an optional DNS-subdomain prefix and a name of at most 63 characters.
fn key_of(key: &str) -> Result<String, SelectorError> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return Err(SelectorError(format!("invalid label key {key:?}")));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || name.len() > 63 || !valid_label_chars(name) {
        return Err(SelectorError(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )));
    }
    Ok(key.to_string())
}

fn value_of(value: &str) -> Result<String, SelectorError> {
    if value.len() > 63 || (!value.is_empty() && !valid_label_chars(value)) {
        return Err(SelectorError(format!(
            "invalid label value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        )));
    }
    Ok(value.to_string())
}

fn valid_label_chars(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    #[test]
    fn every_operator_matches_like_kubernetes() {
        let o = obj(json!({"app": "web", "tier": "front", "n": "5"}));
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier in (back)", false),
            ("n>4", true),
            ("n<4", false),
            ("example.com/x", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&o), want, "{sel}");
            // The watch cache's attributes answer the same as the decoded object.
            let cached = crate::watch_cache::CachedObject::new(o.clone());
            assert_eq!(s.matches_attrs(cached.attrs()), want, "cached: {sel}");
        }
        let unlabelled = crate::watch_cache::CachedObject::new(json!({"metadata": {}}));
        assert!(LabelSelector::parse("!app")
            .unwrap()
            .matches_attrs(unlabelled.attrs()));
        assert!(!LabelSelector::parse("app")
            .unwrap()
            .matches_attrs(unlabelled.attrs()));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for bad in [
            "app in (web",
            "app=we b",
            "a b c",
            "app in web)",
            "app foo (x)",
            "=x",
            "n>x",
            "app=web,",
            "-bad=x",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }
}
