#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod budget;
pub mod context;
pub mod control;
pub mod correction;
pub mod digest;
pub mod encode;
pub mod error;
pub mod estimate;
pub mod evidence;
pub mod finding;
pub mod ids;
pub mod live;
pub mod manifest;
pub mod memory;
pub mod mode;
pub mod plan;
pub mod policy;
pub mod privacy;
pub mod publish;
pub mod runner;
pub mod sink;
pub mod sink_class;
pub mod source;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transform;
pub mod validate;

pub use error::{BoxError, Error, ErrorKind, Result};

/// The names most programs need.
pub mod prelude {
    pub use crate::context::{
        Clock, ExecutionMode, FixedClock, OutputLineage, SystemClock, TransformContext,
    };
    pub use crate::control::{Control, RunReport};
    pub use crate::correction::{
        Correction, CorrectionEvent, CorrectionOutbox, CorrectionPublisher, EventOrigin,
    };
    pub use crate::digest::{OutputRow, PartitionDigest, PartitionDigests};
    pub use crate::error::{Error, ErrorKind};
    pub use crate::ids::{ChunkId, PartitionKey, RunId};
    pub use crate::manifest::{
        ApprovedManifest, InputRange, Limits, Mutation, PrivacySpec, ReferenceData,
        ReferenceSemantics, RunKind, RunManifest, SafetySpec, SideEffectPolicy, SourceSpec,
        TargetSpec, TransformSpec, ValidationPlan,
    };
    pub use crate::policy::{DefaultSinkPolicy, SinkPolicy};
    pub use crate::publish::{PublishReceipt, Publisher, PublisherCapabilities, TargetReader};
    pub use crate::runner::{Executor, RunnerOptions};
    pub use crate::sink::{SinkDescriptor, StagingSink};
    pub use crate::source::BackfillSource;
    pub use crate::state::RunState;
    pub use crate::store::{RunFilter, RunStore};
    pub use crate::transform::{DeterministicTransform, TransformError, TransformFingerprint};
    pub use crate::validate::{Validator, Verdict};
}
