//! The real `runner` binary against a stand-in for runs' runner API (see `helpers`).

mod helpers;

mod cap;
mod demo;
mod environment;
mod refusals;
