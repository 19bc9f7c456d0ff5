//! Pintu: permit types as hot-reloaded Rhai rules, stored in redb, served over HTTP.
//!
//! The map of the crate, in the order a request meets it:
//! - [`api`] — axum routes, auth, size limits, the one error type of the HTTP surface;
//! - [`app`] — the composition root: wires the services over one store and one configuration;
//! - [`services`] — one job each: releases (reloads, activation, pin, fallback), evaluation,
//!   the decision and audit recorder, tokens, users;
//! - [`release`] — build a candidate from a rules tree, test it, content-hash it;
//! - [`watch`] — file events → candidate releases;
//! - [`domain`] — plain values: exact numbers, dates, checked form data, params and tables;
//! - [`permits`], [`levy`] — forms, checks, levy line items;
//! - [`scripts`] — the Rhai engine, sandbox limits and script API; the adapter between domain
//!   values and Rhai's;
//! - [`store`] — the only code that touches redb;
//! - [`auth`], [`config`], [`diagnostic`]; `metrics` is internal.
//!
//! Dependencies point one way: `api` → `services` → {`release`, `permits`, `scripts`, `store`}.
//! What is public is what the binary, the end-to-end tests and the benchmarks use.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod connectors;
pub mod diagnostic;
pub mod domain;
pub mod levy;
pub(crate) mod metrics;
pub mod permits;
pub mod release;
pub mod scripts;
pub mod services;
pub mod store;
pub mod watch;
