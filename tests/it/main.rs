//! End-to-end tests.

#![allow(clippy::unwrap_used)]

mod bad_input;
mod concurrency;
mod content;
mod crash;
mod day2;
mod security;
mod team;
mod tidy;

mod local;
mod plugin;

mod aws;
