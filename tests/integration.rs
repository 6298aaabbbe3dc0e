//! The integration tests, one binary: each file beside this one is a module of it (`cargo test
//! --test integration NAME` runs the tests whose path holds NAME, e.g. `filter::` or
//! `schema_is_current`). Every test binary links DataFusion, libtorch and ONNX Runtime, so one
//! binary relinks once per library change instead of once per file. Ray's (`ray.rs`), the Python
//! module's (`python.rs`) and the SQL logic tests (`sqllogictest.rs`, its own harness) stay
//! binaries of their own: the first two start Ray clusters, which must not overlap.

#[path = "common/mod.rs"]
mod common;
#[path = "common/judge_server.rs"]
mod judge_server;

#[path = "active.rs"]
mod active;
#[path = "architecture.rs"]
mod architecture;
#[path = "bad_input.rs"]
mod bad_input;
#[path = "causal.rs"]
mod causal;
#[path = "eval.rs"]
mod eval;
#[path = "filter.rs"]
mod filter;
#[path = "finetune.rs"]
mod finetune;
#[path = "gpu_first_run.rs"]
mod gpu_first_run;
#[path = "import.rs"]
mod imports;
#[path = "judge.rs"]
mod judge;
#[path = "layouts.rs"]
mod layouts;
#[path = "loaders.rs"]
mod loaders;
#[path = "offline_stages.rs"]
mod offline_stages;
#[path = "pipeline_files.rs"]
mod pipeline_files;
#[path = "prefix_sharing.rs"]
mod prefix_sharing;
#[path = "reliability.rs"]
mod reliability;
#[path = "remote.rs"]
mod remote;
#[path = "schemas.rs"]
mod schemas;
#[path = "scorer.rs"]
mod scorer;
#[path = "trainer.rs"]
mod trainer;
