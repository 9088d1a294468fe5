//! In-memory reference implementations of every trait.
//!
//! They define the reference behaviour the testkit's conformance suites check, and they let users
//! unit-test transforms and runs without services. They keep everything in process memory behind a
//! mutex; they are not meant for production data volumes, and adapters never test against them.

mod outbox;
mod publisher;
mod sink;
mod source;
mod store;
mod windows;

pub use outbox::MemoryOutbox;
pub use publisher::MemoryPublisher;
pub use sink::MemorySink;
pub use source::{ChunkBy, MemorySource};
pub use store::MemoryStore;
pub use windows::MemoryWindows;

use crate::error::Error;

const ADAPTER: &str = "memory";

fn poisoned() -> Error {
    Error::adapter(ADAPTER, "state mutex poisoned by a panic in another task")
}
