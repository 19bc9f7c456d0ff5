//! Params and reference tables as scripts see them, built once per release and shared by every
//! call. A Rhai map is copied whole whenever it is passed to a function or read out of another
//! map, so handing scripts `params` as a map copied every table several times per evaluation.
//! A [`SharedMap`] is one reference-counted level of a map: passing it, or reading a table out
//! of it, copies a pointer.
//!
//! To scripts it is a map: `type_of` says `"map"`, and `t.k`, `t[k]`, `k in t`, `keys`,
//! `values`, `len`, `is_empty`, `get`, `==`, printing and templates work as on any map. Writing
//! (`t.k = v`, `t[k] = v`, `remove`, `clear`, ...) changes the script's own copy of that level
//! (copy on write), never the release's, exactly as with the map copies scripts had before.
//! The rest of the map API (`+`, `+=`, `mixin`, `fill_with`, `filter`, `map`, `drain`,
//! `retain`) works as well: merging gives a plain map.

use std::sync::Arc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FnPtr, ImmutableString, Map, NativeCallContext, INT,
};

/// One level of a shared map; nested maps are `SharedMap`s themselves.
#[derive(Clone)]
pub struct SharedMap(Arc<Map>);

impl SharedMap {
    /// `value` with every map inside it (in maps and arrays, at any depth) made shared.
    pub fn share(value: Dynamic) -> Dynamic {
        if value.is_map() {
            let map = value.cast::<Map>();
            let shared: Map = map.into_iter().map(|(k, v)| (k, Self::share(v))).collect();
            Dynamic::from(Self(Arc::new(shared)))
        } else if value.is_array() {
            let items = value.cast::<Array>();
            Dynamic::from_array(items.into_iter().map(Self::share).collect())
        } else {
            value
        }
    }

    /// The params of a permit as scripts see them.
    pub fn from_params(params: &crate::domain::Params) -> Self {
        Self::from_map(super::value::record_to_map(params.entries()))
    }

    /// A shared map of `map`'s entries (nested maps made shared).
    pub fn from_map(map: Map) -> Self {
        Self(Arc::new(
            map.into_iter().map(|(k, v)| (k, Self::share(v))).collect(),
        ))
    }

    /// The value at `key`, `()` when there is none (as Rhai answers for a map).
    pub fn get(&self, key: &str) -> Dynamic {
        self.0.get(key).cloned().unwrap_or(Dynamic::UNIT)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The entries of this level; nested maps stay shared.
    pub fn entries(&self) -> &Map {
        &self.0
    }

    /// This level, writable: copied first if the release (or another copy) still shares it.
    fn make_mut(&mut self) -> &mut Map {
        Arc::make_mut(&mut self.0)
    }

    /// Sets `key` in this copy (nested maps of `value` made shared); the release's stays as it
    /// was.
    pub fn insert(&mut self, key: &str, value: Dynamic) {
        self.make_mut().insert(key.into(), Self::share(value));
    }

    /// A plain Rhai map with the same content, nested maps included.
    pub fn to_map(&self) -> Map {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), unshare(v)))
            .collect()
    }
}

/// A map a script returned, whether built by the script or read from a shared map.
pub fn into_map(value: Dynamic) -> Option<Map> {
    if let Some(shared) = value.read_lock::<SharedMap>() {
        return Some(shared.to_map());
    }
    value.try_cast::<Map>()
}

/// `value` with every shared map inside it turned back into a plain map.
pub fn unshare(value: &Dynamic) -> Dynamic {
    if let Some(m) = value.read_lock::<SharedMap>() {
        return Dynamic::from_map(m.to_map());
    }
    if let Some(items) = value.read_lock::<Array>() {
        return Dynamic::from_array(items.iter().map(unshare).collect());
    }
    if let Some(map) = value.read_lock::<Map>() {
        return Dynamic::from_map(map.iter().map(|(k, v)| (k.clone(), unshare(v))).collect());
    }
    value.clone()
}

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Makes `SharedMap` behave as a map in scripts.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<SharedMap>("map");
    engine.register_indexer_get(|m: &mut SharedMap, key: &str| m.get(key));
    engine.register_indexer_set(|m: &mut SharedMap, key: &str, value: Dynamic| {
        m.make_mut().insert(key.into(), value);
    });
    engine.register_fn("contains", |m: &mut SharedMap, key: &str| {
        m.contains_key(key)
    });
    engine.register_fn("get", |m: &mut SharedMap, key: &str| m.get(key));
    engine.register_fn("set", |m: &mut SharedMap, key: &str, value: Dynamic| {
        m.make_mut().insert(key.into(), value);
    });
    engine.register_fn("len", |m: &mut SharedMap| {
        INT::try_from(m.0.len()).unwrap_or(INT::MAX)
    });
    engine.register_fn("is_empty", |m: &mut SharedMap| m.0.is_empty());
    engine.register_fn("keys", |m: &mut SharedMap| -> Array {
        m.0.keys()
            .map(|k| ImmutableString::from(k.as_str()).into())
            .collect()
    });
    engine.register_fn("values", |m: &mut SharedMap| -> Array {
        m.0.values().cloned().collect()
    });
    engine.register_fn("remove", |m: &mut SharedMap, key: &str| {
        m.make_mut().remove(key).unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("clear", |m: &mut SharedMap| m.make_mut().clear());
    engine.register_fn("to_json", |ctx: NativeCallContext, m: &mut SharedMap| {
        ctx.call_native_fn::<ImmutableString>("to_json", (m.to_map(),))
    });
    engine.register_fn("to_string", |m: &mut SharedMap| {
        Dynamic::from_map(m.to_map()).to_string()
    });
    engine.register_fn("to_debug", |m: &mut SharedMap| {
        format!("{:?}", Dynamic::from_map(m.to_map()))
    });
    // Equality as between the plain maps; compared with anything else a map is just unequal.
    fn equal(ctx: &NativeCallContext, a: Map, b: Map) -> Res<bool> {
        ctx.call_native_fn::<bool>("==", (a, b))
    }
    engine.register_fn(
        "==",
        |ctx: NativeCallContext, a: SharedMap, b: SharedMap| equal(&ctx, a.to_map(), b.to_map()),
    );
    engine.register_fn("==", |ctx: NativeCallContext, a: SharedMap, b: Map| {
        equal(&ctx, a.to_map(), b)
    });
    engine.register_fn("==", |ctx: NativeCallContext, a: Map, b: SharedMap| {
        equal(&ctx, a, b.to_map())
    });
    engine.register_fn(
        "!=",
        |ctx: NativeCallContext, a: SharedMap, b: SharedMap| {
            equal(&ctx, a.to_map(), b.to_map()).map(|e| !e)
        },
    );
    engine.register_fn("!=", |ctx: NativeCallContext, a: SharedMap, b: Map| {
        equal(&ctx, a.to_map(), b).map(|e| !e)
    });
    engine.register_fn("!=", |ctx: NativeCallContext, a: Map, b: SharedMap| {
        equal(&ctx, a, b.to_map()).map(|e| !e)
    });
    register_map_operations(engine);
}

/// The rest of Rhai's map API on shared maps, so an author never has to know a table is
/// shared: merging gives a plain map, and what writes changes the script's own copy.
fn register_map_operations(engine: &mut Engine) {
    engine.register_fn("+", |a: SharedMap, b: Map| merged(a.to_map(), b));
    engine.register_fn("+", |a: Map, b: SharedMap| merged(a, b.to_map()));
    engine.register_fn("+", |a: SharedMap, b: SharedMap| {
        merged(a.to_map(), b.to_map())
    });
    for name in ["mixin", "+="] {
        engine.register_fn(name, |a: &mut SharedMap, b: Map| mix(a.make_mut(), b, true));
        engine.register_fn(name, |a: &mut SharedMap, b: SharedMap| {
            mix(a.make_mut(), b.to_map(), true)
        });
        engine.register_fn(name, |a: &mut Map, b: SharedMap| mix(a, b.to_map(), true));
    }
    engine.register_fn("fill_with", |a: &mut SharedMap, b: Map| {
        mix(a.make_mut(), b, false)
    });
    engine.register_fn("fill_with", |a: &mut SharedMap, b: SharedMap| {
        mix(a.make_mut(), b.to_map(), false)
    });
    engine.register_fn("fill_with", |a: &mut Map, b: SharedMap| {
        mix(a, b.to_map(), false)
    });
    engine.register_fn(
        "filter",
        |ctx: NativeCallContext, m: &mut SharedMap, f: FnPtr| -> Res<Map> {
            ctx.call_native_fn("filter", (m.to_map(), f))
        },
    );
    engine.register_fn(
        "map",
        |ctx: NativeCallContext, m: &mut SharedMap, f: FnPtr| -> Res<Map> {
            ctx.call_native_fn("map", (m.to_map(), f))
        },
    );
    // `drain` removes and returns the entries `f` accepts; `retain` keeps them and returns the
    // others. Both are `filter` on a plain copy, then the removal from the script's own copy.
    engine.register_fn(
        "drain",
        |ctx: NativeCallContext, m: &mut SharedMap, f: FnPtr| -> Res<Map> {
            let accepted: Map = ctx.call_native_fn("filter", (m.to_map(), f))?;
            let own = m.make_mut();
            Ok(accepted
                .keys()
                .filter_map(|k| own.remove(k).map(|v| (k.clone(), v)))
                .collect())
        },
    );
    engine.register_fn(
        "retain",
        |ctx: NativeCallContext, m: &mut SharedMap, f: FnPtr| -> Res<Map> {
            let accepted: Map = ctx.call_native_fn("filter", (m.to_map(), f))?;
            let own = m.make_mut();
            let rejected: Vec<_> = own
                .keys()
                .filter(|k| !accepted.contains_key(*k))
                .cloned()
                .collect();
            Ok(rejected
                .into_iter()
                .filter_map(|k| own.remove(&k).map(|v| (k, v)))
                .collect())
        },
    );
}

fn merged(mut a: Map, b: Map) -> Map {
    a.extend(b);
    a
}

/// `b`'s entries into `a`: all of them (`mixin`), or only the keys `a` lacks (`fill_with`).
fn mix(a: &mut Map, b: Map, overwrite: bool) {
    for (k, v) in b {
        if overwrite || !a.contains_key(&k) {
            a.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Limits;
    use crate::scripts::ScriptHost;

    /// `[params]` with one table, as a permit's `params` are built.
    fn params() -> SharedMap {
        let doc: toml_edit::DocumentMut =
            "batas = \"10\"\nlantai = [1, 2]\n[tables.harga]\npagar = { indeks = 0.5, label = \"Pagar\" }\nparkir = { indeks = 1.25, label = \"Parkir\" }\n"
                .parse()
                .unwrap();
        let value = crate::domain::value::from_toml(doc.as_item()).unwrap();
        SharedMap::from_map(crate::scripts::value::to_dynamic(&value).cast::<Map>())
    }

    fn call(body: &str, p: &SharedMap) -> Dynamic {
        let h = ScriptHost::new(&Limits::default(), BTreeMap::new());
        let s = h
            .compile(
                "p/levy.rhai",
                &format!("fn baca(t, k) {{ t[k] }}\nfn f(p) {{\n  {body}\n}}"),
            )
            .unwrap();
        h.call(
            &crate::scripts::CallContext::default(),
            &s,
            "f",
            (Dynamic::from(p.clone()),),
        )
        .unwrap_or_else(|e| panic!("`{body}`: {e}"))
    }

    #[test]
    fn tables_reach_scripts_and_their_functions_without_a_copy() {
        let p = params();
        let table = p.get("tables").cast::<SharedMap>().get("harga");
        let release_row = table.cast::<SharedMap>().get("pagar").cast::<SharedMap>();
        // Read through a variable, a property chain and a function taking the table.
        let out = call("let t = p.tables; baca(t.harga, \"pagar\")", &p);
        let row = out
            .try_cast::<SharedMap>()
            .expect("a table row is still the release's shared map");
        assert!(
            Arc::ptr_eq(&row.0, &release_row.0),
            "the script got a copy of the row, not the release's"
        );
    }

    #[test]
    fn shared_params_behave_as_maps() {
        let p = params();
        let cases = [
            ("type_of(p.tables.harga)", "map"),
            ("type_of(p)", "map"),
            ("\"pagar\" in p.tables.harga", "true"),
            ("\"pintu\" in p.tables.harga", "false"),
            ("p.tables.harga[\"parkir\"].indeks", "1.25"),
            ("p.tables.harga.pagar.label", "Pagar"),
            ("type_of(p.tables.harga.pintu)", "()"),
            ("p.tables.harga.keys()", "[\"pagar\", \"parkir\"]"),
            ("p.tables.harga.len()", "2"),
            ("p.tables.harga.values().len()", "2"),
            ("p.tables.harga.get(\"parkir\").label", "Parkir"),
            (
                "p.tables.harga.pagar == #{ indeks: 0.5, label: \"Pagar\" }",
                "true",
            ),
            ("p.tables.harga.pagar != p.tables.harga.parkir", "true"),
            (
                "`${p.tables.harga.pagar}`",
                "#{\"indeks\": 0.5, \"label\": \"Pagar\"}",
            ),
            ("let n = 0; for x in p.lantai { n += x; } n", "3"),
            ("decimal(p.batas) * 2", "20"),
        ];
        for (body, expected) in cases {
            assert_eq!(call(body, &p).to_string(), expected, "`{body}`");
        }
    }

    #[test]
    fn a_script_writes_its_own_copy_never_the_release() {
        let p = params();
        let out = call(
            "p.batas = \"99\"; p.tables.harga.pagar.indeks = 7; let t = p.tables.harga; t.baru = 1; t.remove(\"parkir\"); [p.batas, p.tables.harga.pagar.indeks, t.keys()]",
            &p,
        );
        assert_eq!(out.to_string(), "[\"99\", 7, [\"baru\", \"pagar\"]]");
        // The next call, like every other, sees the release's params.
        let again = call(
            "[p.batas, p.tables.harga.pagar.indeks, p.tables.harga.keys()]",
            &p,
        );
        assert_eq!(again.to_string(), "[\"10\", 0.5, [\"pagar\", \"parkir\"]]");
    }

    #[test]
    fn the_rest_of_the_map_api_works_on_params_and_leaves_the_release_alone() {
        let p = params();
        let cases = [
            ("(p.tables.harga.pagar + #{ x: 1 }).keys()", "[\"indeks\", \"label\", \"x\"]"),
            ("(#{ x: 1 } + p.tables.harga.pagar).len()", "3"),
            ("let t = p.tables.harga.pagar; t += #{ indeks: 2 }; t.indeks", "2"),
            ("let t = p.tables.harga.pagar; t.mixin(#{ y: 1 }); t.keys()", "[\"indeks\", \"label\", \"y\"]"),
            ("let m = #{ label: \"x\" }; m.mixin(p.tables.harga.pagar); m.label", "Pagar"),
            ("let m = #{ label: \"x\" }; m.fill_with(p.tables.harga.pagar); [m.label, m.indeks]", "[\"x\", 0.5]"),
            ("p.tables.harga.filter(|k, v| v.indeks > 1).keys()", "[\"parkir\"]"),
            ("p.tables.harga.map(|k, v| v.label).parkir", "Parkir"),
            ("let t = p.tables.harga; let d = t.drain(|k, v| k == \"pagar\"); [d.keys(), t.keys()]", "[[\"pagar\"], [\"parkir\"]]"),
            ("let t = p.tables.harga; let r = t.retain(|k, v| k == \"pagar\"); [r.keys(), t.keys()]", "[[\"parkir\"], [\"pagar\"]]"),
        ];
        for (body, expected) in cases {
            assert_eq!(call(body, &p).to_string(), expected, "`{body}`");
        }
        let again = call("[p.tables.harga.keys(), p.tables.harga.pagar.keys()]", &p);
        assert_eq!(
            again.to_string(),
            "[[\"pagar\", \"parkir\"], [\"indeks\", \"label\"]]"
        );
    }

    #[test]
    fn maps_read_from_params_leave_as_json_and_as_plain_maps() {
        let p = params();
        let out = call("#{ baris: p.tables.harga.pagar }", &p);
        assert_eq!(
            crate::scripts::value::dynamic_to_json(&out),
            serde_json::json!({"baris": {"indeks": "0.5", "label": "Pagar"}})
        );
        let row = into_map(p.get("tables").cast::<SharedMap>().get("harga")).unwrap();
        assert_eq!(row.len(), 2);
    }
}
