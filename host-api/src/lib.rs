//! The contract Pintu offers to rule scripts (and, as WIT packages, to connectors).
//!
//! For rule authors the contract is text: [`SCRIPT_API`] documents every function a script may
//! call, and [`DEFINITIONS`] is the same API as a Rhai definition file for editors.

/// `SCRIPT_API.md`: the language as configured, entry points, every function, limits.
pub const SCRIPT_API: &str = include_str!("../SCRIPT_API.md");

/// `definitions/pintu.d.rhai`: signatures and doc comments for editor completion.
pub const DEFINITIONS: &str = include_str!("../definitions/pintu.d.rhai");
