//! The services the HTTP surface, the file watcher and the command line call, one job each:
//! - [`releases`] — which release serves, building and activating candidates, the pin, the
//!   reload lock and the start-up fallback;
//! - [`evaluator`] — one evaluation of a request against the active release, recorded;
//! - [`recorder`] — the decision and audit logs, and their retention;
//! - [`tokens`] — API tokens;
//! - [`users`] — users and their tokens;
//! - [`applications`] — applications through their flows, numbers and events;
//! - [`dispatcher`] — delivery of outbox events to connectors, retries, dead letters, syncs;
//! - [`connectors`] — inbound calls to the active release's connectors, the actions they ask
//!   for, the admin's list and dry runs.
//!
//! Services reach storage only through [`crate::store::Store`], and run its blocking work on
//! the blocking pool; [`crate::app::App`] wires them together.

pub mod applications;
pub mod connectors;
pub mod dispatcher;
pub mod evaluator;
pub mod recorder;
pub mod releases;
pub mod tokens;
pub mod users;
