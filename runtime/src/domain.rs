//! The domain in plain Rust: exact numbers and dates as the office writes them, the values a
//! checked form holds, a permit's params and reference tables. Nothing here knows the script
//! engine, storage or HTTP; `scripts` converts these values to and from Rhai. Flows, number
//! formats and the working-day calendar are the release's, as plain values too.

pub mod application;
pub mod calendar;
pub mod flow;
pub mod levy;
pub mod numbering;
pub mod value;

pub use value::{decimal_string, parse_date, parse_decimal, Params, Record, Value};

#[cfg(test)]
mod tests {
    /// The domain stays plain Rust: the script engine, storage and HTTP depend on it, never the
    /// other way round.
    #[test]
    fn the_domain_knows_no_engine_storage_or_http() {
        let sources = [
            ("domain.rs", include_str!("domain.rs")),
            ("domain/value.rs", include_str!("domain/value.rs")),
            ("domain/levy.rs", include_str!("domain/levy.rs")),
            (
                "domain/application.rs",
                include_str!("domain/application.rs"),
            ),
            ("domain/flow.rs", include_str!("domain/flow.rs")),
            ("domain/numbering.rs", include_str!("domain/numbering.rs")),
            ("domain/calendar.rs", include_str!("domain/calendar.rs")),
        ];
        for (file, text) in sources {
            for line in text.lines().filter(|l| l.trim_start().starts_with("use ")) {
                for foreign in ["rhai", "redb", "axum", "crate::scripts", "crate::store"] {
                    assert!(
                        !line.contains(foreign),
                        "{file}: `{line}` reaches into {foreign}"
                    );
                }
            }
        }
    }
}
