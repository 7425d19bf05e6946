//! `causeway demo`'s traffic: a seeded story of a small shop with a bad deploy,
//! a rollback, context loss, PII, late and malformed messages, produced lazily
//! as the Kafka messages of its inputs ([`story`]).

mod changes;
mod rng;
pub mod story;
mod traffic;

pub use story::{Change, Counts, DemoMessage, Flaw, Story, StoryConfig, Timeline};
