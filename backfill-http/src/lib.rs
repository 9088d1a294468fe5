#![doc = include_str!("../README.md")]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod auth;
mod builder;
mod capture;
mod client;
mod error;
mod fetch;
mod reconcile;
mod replay;
mod scan;
mod source;

pub use auth::{ClientCredentials, StaticToken, TokenProvider};
pub use builder::HttpSourceBuilder;
pub use capture::{
    Capture, CaptureStore, CapturedPage, DirCaptureStore, MemoryCaptureStore, PageRef,
};
pub use client::{RetryPolicy, Vendor};
pub use error::{HttpError, Result};
pub use reconcile::{hidden_deletes, IdListing};
pub use scan::{ChunkState, Scan};
pub use source::{capture_key, HttpSource};
