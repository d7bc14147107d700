//! Numbers read from JSON bodies by JSON pointer: the features of a sampled request,
//! the score of a response, the predictions a shadow comparison needs.

use std::collections::BTreeMap;

/// The number at a JSON pointer of a document (booleans count as 0 and 1).
pub fn number_at(document: &serde_json::Value, pointer: &str) -> Option<f64> {
    match document.pointer(pointer)? {
        serde_json::Value::Number(n) => n.as_f64().filter(|v| v.is_finite()),
        serde_json::Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// The named features found in a request body; missing or non-numeric ones are left out.
pub fn features(body: &[u8], pointers: &[(String, String)]) -> BTreeMap<String, f64> {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(body) else {
        return BTreeMap::new();
    };
    pointers
        .iter()
        .filter_map(|(name, pointer)| number_at(&document, pointer).map(|v| (name.clone(), v)))
        .collect()
}

/// The score at `pointer` in a response body.
pub fn score(body: &[u8], pointer: &str) -> Option<f64> {
    number_at(&serde_json::from_slice(body).ok()?, pointer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_scores() {
        let f = features(
            br#"{"inputs": [{"data": [12.5, true, "x", null]}]}"#,
            &[
                ("amount".into(), "/inputs/0/data/0".into()),
                ("card_present".into(), "/inputs/0/data/1".into()),
                ("text".into(), "/inputs/0/data/2".into()),
                ("null".into(), "/inputs/0/data/3".into()),
                ("missing".into(), "/nope".into()),
            ],
        );
        assert_eq!(
            f,
            BTreeMap::from([
                ("amount".to_owned(), 12.5),
                ("card_present".to_owned(), 1.0)
            ])
        );
        assert!(features(b"[", &[("a".into(), "/0".into())]).is_empty());
        assert_eq!(
            score(br#"{"outputs": [{"data": [0.93]}]}"#, "/outputs/0/data/0"),
            Some(0.93)
        );
        assert_eq!(score(b"not json", "/outputs/0/data/0"), None);
        assert_eq!(score(br#"{"outputs": "x"}"#, "/outputs/0/data/0"), None);
        assert_eq!(score(br#"{"error": "boom"}"#, "/outputs/0/data/0"), None);
        assert_eq!(
            score(b"0.5", ""),
            Some(0.5),
            "the empty pointer is the whole document"
        );
    }
}
