//! Schema violations in words a newcomer can act on: "`cwd` of command
//! "build" must be an absolute path", every allowed value of an enum, and
//! "did you mean `write_paths`?" for a misspelt field.
//!
//! The JSON Schema validator's own messages are kept where nothing better
//! is known; the pointer (`/commands/0/cwd`) is always kept.

use serde_json::Value;

use super::schema::{Kind, Violation};

/// A violation rewritten for people, with a hint when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// JSON pointer into the document (`""` is the root).
    pub pointer: String,
    /// What is wrong, naming the command by its `id` where there is one.
    pub message: String,
    /// What to do, if csc knows (e.g. "did you mean `write_paths`?").
    pub hint: Option<String>,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Rewrite every violation of `doc` (a document of `kind`).
pub fn explain(kind: Kind, doc: &Value, violations: &[Violation]) -> Vec<Explained> {
    let schema: Value = serde_json::from_str(kind.schema_text()).unwrap_or(Value::Null);
    let names = property_names(&schema);
    violations
        .iter()
        .map(|v| one(&schema, &names, doc, v))
        .collect()
}

/// Where a pointer is, in words: `command "build"` for `/commands/0/...`.
fn subject(doc: &Value, pointer: &str) -> Option<String> {
    let mut parts = pointer.split('/').skip(1);
    if parts.next()? != "commands" {
        return None;
    }
    let index: usize = parts.next()?.parse().ok()?;
    match doc
        .get("commands")?
        .get(index)?
        .get("id")
        .and_then(Value::as_str)
    {
        Some(id) if !id.is_empty() => Some(format!("command {id:?} (commands[{index}])")),
        _ => Some(format!("commands[{index}]")),
    }
}

/// The field a pointer ends in (array indices skipped: `/a/0` is `a`).
fn field(pointer: &str) -> Option<&str> {
    pointer
        .rsplit('/')
        .find(|p| !p.is_empty() && p.parse::<usize>().is_err())
}

fn one(schema: &Value, names: &[String], doc: &Value, v: &Violation) -> Explained {
    let who = subject(doc, &v.pointer);
    let name = field(&v.pointer);
    let of = |what: &str| match (&who, name) {
        (Some(w), Some(n)) if n != "commands" => format!("`{n}` of {w} {what}"),
        (Some(w), _) => format!("{w} {what}"),
        (None, Some(n)) => format!("`{n}` {what}"),
        (None, None) => format!("the document {what}"),
    };
    let m = &v.message;
    let mut hint = None;
    let message = if m.contains("does not match \"^(/|[A-Za-z]:") {
        let got = m.split(" does not match").next().unwrap_or_default();
        of(&format!("must be an absolute path (got {got})"))
    } else if m.contains(" is not one of ") {
        let got = m.split(" is not one of").next().unwrap_or_default();
        match name.and_then(|n| enum_values(schema, n)) {
            Some(values) => of(&format!(
                "must be one of {} (got {got})",
                values
                    .iter()
                    .map(|x| format!("\"{x}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            None => m.clone(),
        }
    } else if let Some(rest) = m.strip_suffix(" is a required property") {
        let missing = rest.trim_matches('"');
        match &who {
            Some(w) => format!("{w} lacks the required field `{missing}`"),
            None => format!("the required field `{missing}` is missing"),
        }
    } else if let Some(list) = m
        .strip_prefix("Additional properties are not allowed (")
        .and_then(|r| r.split(") were unexpected").next())
        .or_else(|| {
            m.strip_prefix("Additional properties are not allowed (")
                .and_then(|r| r.split(" was unexpected").next())
        })
    {
        let (message, unknown_hint) = unknown_fields(list, who.as_deref(), names);
        hint = unknown_hint;
        message
    } else if m.contains("'oneOf'") && who.is_some() && name == Some("commands") {
        format!(
            "{} needs exactly one of `exec` or `pipeline`",
            who.clone().unwrap_or_default()
        )
    } else {
        match &who {
            Some(w) => format!("{w}: {m}"),
            None => m.clone(),
        }
    };
    Explained {
        pointer: v.pointer.clone(),
        message,
        hint,
    }
}

/// The message and hint for unknown fields: `list` is the validator's
/// `'a', 'b'` list; a misspelt name gets a "did you mean", a top-level
/// `argv` in a command says where it goes.
fn unknown_fields(list: &str, who: Option<&str>, names: &[String]) -> (String, Option<String>) {
    let unknown: Vec<&str> = list
        .trim_end_matches(" were unexpected)")
        .trim_end_matches(" was unexpected)")
        .split(", ")
        .map(|s| s.trim_matches('\''))
        .collect();
    let hints: Vec<String> = unknown
        .iter()
        .filter_map(|u| suggest(u, names).map(|s| format!("`{u}`: did you mean `{s}`?")))
        .collect();
    let hint = if unknown.contains(&"argv") && who.is_some() {
        Some("`argv` goes inside `exec`: \"exec\": {\"argv\": [...]}, or use `pipeline`".into())
    } else if !hints.is_empty() {
        Some(hints.join("; "))
    } else {
        None
    };
    let list = unknown
        .iter()
        .map(|u| format!("`{u}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = match who {
        Some(w) => format!("{w} has unknown field(s) {list}"),
        None => format!("unknown field(s) {list}"),
    };
    (message, hint)
}

/// Every property name the schema defines (for "did you mean").
fn property_names(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    out.extend(props.keys().cloned());
                }
                map.values().for_each(|x| walk(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(schema, &mut out);
    out.sort();
    out.dedup();
    out
}

/// The `enum` of property `name` anywhere in the schema (directly or in
/// its `items`).
fn enum_values(schema: &Value, name: &str) -> Option<Vec<String>> {
    fn values(v: &Value) -> Option<Vec<String>> {
        let e = v
            .get("enum")
            .or_else(|| v.get("items").and_then(|i| i.get("enum")))?;
        Some(
            e.as_array()?
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect(),
        )
    }
    fn walk(v: &Value, name: &str) -> Option<Vec<String>> {
        match v {
            Value::Object(map) => {
                if let Some(found) = map
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .and_then(values)
                {
                    return Some(found);
                }
                map.values().find_map(|x| walk(x, name))
            }
            Value::Array(items) => items.iter().find_map(|x| walk(x, name)),
            _ => None,
        }
    }
    walk(schema, name)
}

/// The known name closest to `unknown`, if it is close enough to be a typo.
pub fn suggest<'a>(unknown: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (distance(unknown, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance (optimal string alignment is not needed here).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value) -> Vec<Explained> {
        let v = super::super::schema::validate(Kind::Contract, &doc);
        explain(Kind::Contract, &doc, &v)
    }

    fn contract(cmd: Value) -> Value {
        json!({"version": "csc.v0.1", "contract_id": "contract-1", "intent": "i",
            "actor": {"agent_id": "a", "session_id": "s", "initiating_user": "u", "delegation_scope": "d"},
            "commands": [cmd], "risk_class": "low", "approval_mode": "policy_only", "justification": "j"})
    }

    fn cmd() -> Value {
        json!({"id": "build", "exec": {"argv": ["ls"]}, "cwd": "/w", "read_paths": [],
            "write_paths": [], "network": "deny", "env_allow": [], "secret_refs": [],
            "timeout_sec": 1, "proposed_effect_type": "observe"})
    }

    #[test]
    fn relative_cwd_says_absolute_path_and_names_the_command() {
        let mut c = cmd();
        c["cwd"] = json!("rel");
        let e = run(contract(c));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].message,
            "`cwd` of command \"build\" (commands[0]) must be an absolute path (got \"rel\")"
        );
    }

    #[test]
    fn enums_list_every_allowed_value() {
        let mut c = cmd();
        c["proposed_effect_type"] = json!("nuke");
        let e = run(contract(c));
        assert!(
            e[0].message.contains(
                "\"observe\", \"transform_local\", \"fetch_external\", \"mutate_repo\", \"deploy\", \"touch_secrets\""
            ),
            "{e:?}"
        );
    }

    #[test]
    fn misspelt_fields_get_a_did_you_mean() {
        let mut c = cmd();
        let w = c.as_object_mut().unwrap().remove("write_paths").unwrap();
        c["writ_paths"] = w;
        let e = run(contract(c));
        let unknown = e
            .iter()
            .find(|x| x.message.contains("unknown field"))
            .unwrap();
        assert_eq!(
            unknown.hint.as_deref(),
            Some("`writ_paths`: did you mean `write_paths`?")
        );
        assert!(unknown.message.contains("command \"build\""), "{unknown:?}");
        assert_eq!(suggest("zzzzzz", &["write_paths".into()]), None);
    }
}
