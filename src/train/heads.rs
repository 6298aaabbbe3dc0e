//! The E heads as libtorch tensors, computing exactly what the heads ONNX graph computes.

use tch::{Device, Kind, Tensor};

use crate::model::heads::{parameter_shapes, HeadsWeights};

use super::TrainError;

pub struct TchHeads {
    pub heads: usize,
    pub dim: usize,
    /// `w1, b1, w2, b2, w3, b3` in `parameter_shapes` order, trainable.
    pub params: Vec<Tensor>,
    /// The initial weights, frozen (ActPRM's anchors).
    pub anchors: Vec<Tensor>,
    pub device: Device,
}

fn to_tensors(w: &HeadsWeights, device: Device) -> Vec<Tensor> {
    parameter_shapes(w.heads, w.dim)
        .iter()
        .zip(w.tensors())
        .map(|((_, shape), data)| {
            Tensor::from_slice(data)
                .reshape(shape.as_slice())
                .to_device(device)
        })
        .collect()
}

pub fn to_vec(t: &Tensor) -> Result<Vec<f32>, TrainError> {
    Vec::<f32>::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1]))
        .map_err(TrainError::from)
}

impl TchHeads {
    pub fn new(
        weights: &HeadsWeights,
        anchors: &HeadsWeights,
        device: Device,
    ) -> Result<Self, TrainError> {
        if (weights.heads, weights.dim) != (anchors.heads, anchors.dim) {
            return Err(TrainError::Torch(format!(
                "anchors are E={}, D={} but heads are E={}, D={}",
                anchors.heads, anchors.dim, weights.heads, weights.dim
            )));
        }
        let params = to_tensors(weights, device)
            .into_iter()
            .map(|t| t.set_requires_grad(true))
            .collect();
        Ok(Self {
            heads: weights.heads,
            dim: weights.dim,
            params,
            anchors: to_tensors(anchors, device),
            device,
        })
    }

    /// Logits `[N, E]` for features `[N, D]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let p = &self.params;
        let h1 = (x.matmul(&p[0]) + &p[1]).relu();
        let h2 = (h1.matmul(&p[2]) + &p[3]).relu();
        (h2.matmul(&p[4]) + &p[5]).squeeze_dim(-1).transpose(0, 1)
    }

    pub fn weights(&self) -> Result<HeadsWeights, TrainError> {
        let t: Vec<Vec<f32>> = self.params.iter().map(to_vec).collect::<Result<_, _>>()?;
        let arr: [Vec<f32>; 6] = t
            .try_into()
            .map_err(|_| TrainError::Torch("six parameter tensors expected".into()))?;
        Ok(HeadsWeights::from_tensors(self.heads, self.dim, arr)?)
    }

    /// The weights, refused when any is NaN or infinite (a diverged run must not be exported).
    pub fn finite_weights(&self) -> Result<HeadsWeights, TrainError> {
        let weights = self.weights()?;
        if weights
            .tensors()
            .iter()
            .any(|t| t.iter().any(|v| !v.is_finite()))
        {
            return Err(TrainError::Torch(
                "refusing to export non-finite weights".into(),
            ));
        }
        Ok(weights)
    }

    pub fn anchor_weights(&self) -> Result<HeadsWeights, TrainError> {
        let t: Vec<Vec<f32>> = self.anchors.iter().map(to_vec).collect::<Result<_, _>>()?;
        let arr: [Vec<f32>; 6] = t
            .try_into()
            .map_err(|_| TrainError::Torch("six anchor tensors expected".into()))?;
        Ok(HeadsWeights::from_tensors(self.heads, self.dim, arr)?)
    }

    /// Mean absolute difference between heads' probabilities on `x`: how far apart the ensemble is.
    pub fn spread(&self, x: &Tensor) -> f64 {
        tch::no_grad(|| {
            self.forward(x)
                .sigmoid()
                .std_dim(1, true, false)
                .mean(Kind::Float)
                .double_value(&[])
        })
    }
}
