//! Connectors: sandboxed WebAssembly components (`pintu:connector` WIT contract) that link the
//! office to outside systems. This module is the host: it loads and checks a connector's
//! manifest and component, and calls it under limits. It is an adapter below the services: it
//! knows nothing of HTTP routes or of the store's tables; what a call needs from the rest of
//! Pintu comes through [`CallEnv`]-style traits.
//!
//! - [`types`] — plain Rust mirrors of the WIT records, independent of the WIT version;
//! - [`error`] — [`CallError`]: why one call failed, naming connector, version and cause.

pub mod error;
pub mod types;

pub use error::{CallError, CallFailure};
pub use types::{
    Action, AppNote, AppRef, Draft, Event, EventOutcome, EventReply, ExternalRef, Header,
    HttpRequest, HttpResponse, InboundReply, InboundRequest, Info, LogLevel,
};
