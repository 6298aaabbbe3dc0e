//! The heads graph under ONNX Runtime, swappable between batches: a new export is loaded fully
//! before it replaces the running one, so a batch never sees half-old, half-new weights and a
//! corrupt export never replaces a working model.

use ort::session::Session;
use ort::value::TensorRef;

use super::execution::{open_session, GraphSource, RuntimeOptions};
use super::heads::{HeadsWeights, INPUT_FEATURES, OUTPUT_PROBS};
use super::Device;
use super::ModelError;

pub struct HeadsRunner {
    session: Session,
    heads: usize,
    dim: usize,
    version: String,
    options: RuntimeOptions,
}

impl HeadsRunner {
    pub fn open(
        bytes: &[u8],
        version: String,
        options: &RuntimeOptions,
    ) -> Result<Self, ModelError> {
        let weights = HeadsWeights::from_onnx(bytes)?;
        // a few small products over features already on the host: the CPU runs them, so a GPU
        // run holds one CUDA session (the backbone's) and one device memory arena
        let on_cpu = RuntimeOptions {
            device: Device::Cpu,
            ..*options
        };
        let session = open_session(GraphSource::Memory(bytes), "the heads", &on_cpu)?;
        Ok(Self {
            session,
            heads: weights.heads,
            dim: weights.dim,
            version,
            options: *options,
        })
    }

    pub fn ensemble_size(&self) -> usize {
        self.heads
    }

    pub fn feature_dim(&self) -> usize {
        self.dim
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Loads `bytes` and swaps it in; on any error the running heads stay untouched.
    pub fn replace(&mut self, bytes: &[u8], version: String) -> Result<(), ModelError> {
        let next = Self::open(bytes, version, &self.options)?;
        if next.dim != self.dim {
            return Err(ModelError::Heads(format!(
                "new heads take features of dimension {}, the running backbone gives {}",
                next.dim, self.dim
            )));
        }
        *self = next;
        Ok(())
    }

    /// Per-step, per-head probabilities `[n, E]` for `n` feature rows of `D` floats.
    pub fn probabilities(&mut self, features: &[f32]) -> Result<Vec<f32>, ModelError> {
        let n = features.len() / self.dim;
        if n == 0 {
            return Ok(Vec::new());
        }
        let input = TensorRef::from_array_view(([n, self.dim], features))
            .map_err(ModelError::ort("heads input"))?;
        let outputs = self
            .session
            .run(ort::inputs![INPUT_FEATURES => input])
            .map_err(ModelError::ort("running the heads"))?;
        let (_, probs) = outputs[OUTPUT_PROBS]
            .try_extract_tensor::<f32>()
            .map_err(ModelError::ort("reading probs"))?;
        Ok(probs.to_vec())
    }
}
