//! Bounds on what one record may hold, so that every stored record stays small and can always be
//! read back. serde_json refuses to read JSON nested deeper than 128 levels, and a request or a
//! script can produce deeper values than that; a request body of 1 MiB can also name thousands of
//! unknown fields, each of which becomes an error. Without these bounds one anonymous request
//! could store megabytes, or a record that no list route can read again.

use serde_json::{json, Map, Value as Json};

/// Deepest nesting kept inside a stored record; deeper values are replaced by
/// [`DEPTH_MARKER`]. The envelope and the record add a few levels on top, still far below
/// serde_json's read limit of 128.
pub const MAX_RECORD_DEPTH: usize = 64;

/// What stands in for a value nested deeper than [`MAX_RECORD_DEPTH`].
pub const DEPTH_MARKER: &str = "(nested too deep to record)";

/// Replaces every array or object at depth `max_depth` or deeper (the top level is depth 1) by
/// [`DEPTH_MARKER`], so the result is at most `max_depth` deep. Iterative, so a hostile depth
/// cannot overflow the stack here.
pub fn cap_depth(value: Json, max_depth: usize) -> Json {
    // Work on an explicit stack of (value, depth) frames; rebuild bottom-up.
    enum Frame {
        Array(Vec<Json>, std::vec::IntoIter<Json>),
        Object(Map<String, Json>, serde_json::map::IntoIter, String),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut current = value;
    loop {
        // Descend into `current` as far as needed.
        let depth = stack.len() + 1;
        let mut done = if depth >= max_depth && (current.is_array() || current.is_object()) {
            Json::String(DEPTH_MARKER.to_owned())
        } else {
            match current {
                Json::Array(items) => {
                    let mut iter = items.into_iter();
                    match iter.next() {
                        Some(first) => {
                            stack.push(Frame::Array(Vec::new(), iter));
                            current = first;
                            continue;
                        }
                        None => Json::Array(Vec::new()),
                    }
                }
                Json::Object(map) => {
                    let mut iter = map.into_iter();
                    match iter.next() {
                        Some((key, first)) => {
                            stack.push(Frame::Object(Map::new(), iter, key));
                            current = first;
                            continue;
                        }
                        None => Json::Object(Map::new()),
                    }
                }
                scalar => scalar,
            }
        };
        // Climb back up, attaching finished values to their parents.
        loop {
            match stack.pop() {
                None => return done,
                Some(Frame::Array(mut out, mut rest)) => {
                    out.push(done);
                    match rest.next() {
                        Some(next) => {
                            stack.push(Frame::Array(out, rest));
                            current = next;
                            break;
                        }
                        None => done = Json::Array(out),
                    }
                }
                Some(Frame::Object(mut out, mut rest, key)) => {
                    out.insert(key, done);
                    match rest.next() {
                        Some((key, next)) => {
                            stack.push(Frame::Object(out, rest, key));
                            current = next;
                            break;
                        }
                        None => done = Json::Object(out),
                    }
                }
            }
        }
    }
}

/// How deeply the arrays and objects of JSON `text` nest: 1 for a top-level container, 0 for a
/// scalar. A container at that depth is what [`cap_depth`] reaches at the same depth, so text
/// whose depth is below `max_depth` needs no cap. Brackets inside strings do not count.
pub fn text_depth(text: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    // Bytes of multi-byte UTF-8 characters are all >= 0x80, so matching ASCII bytes is exact.
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// `value` itself when its JSON text is at most `max_bytes` long; otherwise an excerpt:
/// `{"truncated": true, "bytes": <full length>, "excerpt": "<the start of the JSON text>"}`,
/// the excerpt taking at most `max_bytes` once stored (escaped as a JSON string).
/// Depth is capped first, so the excerpt and the whole value are both readable.
pub fn excerpt(value: Json, max_bytes: usize) -> Json {
    // Most values are far shallower than the cap: their text shows it, and rebuilding the
    // whole tree to cap it is saved (every evaluation bounds its input and output here).
    let text = serde_json::to_string(&value);
    let (value, text) = match text {
        Ok(t) if text_depth(t.as_bytes()) < MAX_RECORD_DEPTH => (value, Ok(t)),
        _ => {
            let value = cap_depth(value, MAX_RECORD_DEPTH);
            let text = serde_json::to_string(&value);
            (value, text)
        }
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => return json!({ "truncated": true, "excerpt": format!("unprintable: {e}") }),
    };
    if text.len() <= max_bytes {
        return value;
    }
    // Cut where the excerpt, escaped as a JSON string, reaches the bound: that is what is stored.
    let mut stored = 0;
    let mut cut = 0;
    for (at, c) in text.char_indices() {
        stored += match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if u32::from(c) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if stored > max_bytes {
            break;
        }
        cut = at + c.len_utf8();
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "excerpt": text.get(..cut).unwrap_or_default(),
    })
}

/// Nesting depth of `value` (a scalar is 1), computed without recursion.
#[cfg(test)]
pub fn depth(value: &Json) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Json::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Json::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Json {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    }

    #[test]
    fn deep_values_are_cut_at_the_limit_with_a_marker() {
        let capped = cap_depth(nested(300), 10);
        assert_eq!(depth(&capped), 10);
        let text = serde_json::to_string(&capped).unwrap();
        assert!(text.contains(DEPTH_MARKER), "{text}");
        // What was shallow enough is untouched.
        let shallow = json!({"a": [1, {"b": "c"}], "d": {}});
        assert_eq!(cap_depth(shallow.clone(), 10), shallow);
    }

    #[test]
    fn the_depth_of_json_text_counts_containers_and_skips_strings() {
        let of = |v: &Json| text_depth(serde_json::to_string(v).unwrap().as_bytes());
        assert_eq!(of(&json!(1)), 0);
        assert_eq!(of(&json!("[[[{")), 0);
        assert_eq!(of(&json!([])), 1);
        assert_eq!(of(&json!({"a": [1, {"b": "]]\\\"{["}], "c": {}})), 3);
        assert_eq!(of(&nested(300)), 300);
        // Escaped quotes and backslashes do not end a string early.
        assert_eq!(of(&json!(["\\", "\"", "\\\"[", {"k\"{": ["é]"]}])), 3);
        // In step with cap_depth: what is shallower than the cap is left as it is.
        for levels in [8, 9, 10, 11, 40] {
            let v = json!({"x": nested(levels)});
            assert_eq!(
                cap_depth(v.clone(), 12) == v,
                of(&v) < 12,
                "{levels} levels"
            );
        }
    }

    #[test]
    fn an_excerpt_caps_depth_whatever_its_size() {
        let deep = excerpt(nested(300), 1_000_000);
        assert_eq!(depth(&deep), MAX_RECORD_DEPTH);
        assert!(deep.to_string().contains(DEPTH_MARKER));
        let below = nested(MAX_RECORD_DEPTH - 1);
        assert_eq!(excerpt(below.clone(), 1_000_000), below);
    }

    #[test]
    fn large_values_become_a_marked_excerpt_of_at_most_the_bound() {
        let big = json!({ "k": "é".repeat(10_000), "q": vec!["\"\u{1}"; 1000] });
        let e = excerpt(big, 1001);
        assert_eq!(e["truncated"], json!(true));
        let stored = serde_json::to_string(&e["excerpt"]).unwrap();
        assert!(stored.len() <= 1001 + 2, "{} bytes stored", stored.len());
        assert!(stored.len() > 900, "the excerpt uses the room it has");
        assert!(e["bytes"].as_u64().unwrap() > 20_000);
        // Escapes count at their stored size.
        let quotes = excerpt(json!(vec!["\"\u{1}"; 1000]), 1001);
        let stored = serde_json::to_string(&quotes["excerpt"]).unwrap();
        assert!(stored.len() <= 1001 + 2, "{} bytes stored", stored.len());
        let small = json!({"x": "1"});
        assert_eq!(excerpt(small.clone(), 1000), small);
    }
}
