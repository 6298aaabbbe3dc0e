//! ONNX as actprm writes it: the protobuf messages (`proto`, the subset of onnx.proto we use) and
//! the one graph builder (`graph`) every writer goes through: the ensemble heads, the tiny test
//! backbone, and the importers' decoder and encoder backbones.

pub mod graph;
pub mod proto;

pub use graph::{Attr, Graph, GraphError};
