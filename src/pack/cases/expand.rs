//! List vars as promptfoo's `generateVarCombinations` expands them: a var
//! whose value is a list with a string first element stands for each of its
//! elements, and a test runs once per combination (the cartesian product,
//! the first key varying slowest); any other value, including a list whose
//! first element is not a string (or an empty list), is one value.

use serde_json::{Map, Value as Json};

/// Every combination of `vars`, in promptfoo's order.
pub(super) fn combinations(vars: &Map<String, Json>) -> Vec<Map<String, Json>> {
    let mut out = vec![Map::new()];
    for (k, v) in vars {
        let values: Vec<&Json> = match v {
            Json::Array(a) if matches!(a.first(), Some(Json::String(_))) => a.iter().collect(),
            other => vec![other],
        };
        out = out
            .iter()
            .flat_map(|c| {
                values.iter().map(move |x| {
                    let mut c = c.clone();
                    c.insert(k.clone(), (*x).clone());
                    c
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(v: Json) -> Vec<Json> {
        let Json::Object(m) = v else { panic!() };
        combinations(&m).into_iter().map(Json::Object).collect()
    }

    /// multiple-translations' vars: 3 × 3 cases, `language` slowest.
    #[test]
    fn lists_expand_as_a_cartesian_product_in_key_order() {
        let c = of(json!({"language": ["French", "German"], "input": ["Hi", "Bye", "Yo"], "n": 1}));
        assert_eq!(c.len(), 6);
        assert_eq!(c[0], json!({"language": "French", "input": "Hi", "n": 1}));
        assert_eq!(c[1], json!({"language": "French", "input": "Bye", "n": 1}));
        assert_eq!(c[3], json!({"language": "German", "input": "Hi", "n": 1}));
        // Not expanded: a list of non-strings (even with strings later), an
        // empty list; a list of strings after a number is expanded.
        assert_eq!(
            of(json!({"a": [1, "x"], "b": []})),
            [json!({"a": [1, "x"], "b": []})]
        );
        assert_eq!(
            of(json!({"a": ["x", 1]})),
            [json!({"a": "x"}), json!({"a": 1})]
        );
        assert_eq!(of(json!({})), [json!({})]);
    }
}
