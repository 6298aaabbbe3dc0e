//! Diverse picks from a batch: uncertainty sampling alone takes a batch's top outliers, often
//! several near-copies of one problem. Following Zhdanov's "Diverse mini-batch Active Learning"
//! (2019): pre-filter the `BETA * k` most uncertain rows, cluster them into `k` groups with
//! k-means weighted by uncertainty, and label the row closest to each centre: uncertain, spread
//! over feature clusters, and typical of its cluster rather than its outlier.

use super::top_uncertain;
use crate::rng::NormalRng;

/// Candidates per pick (Zhdanov's beta).
const BETA: usize = 10;
const LLOYD_ITERATIONS: usize = 20;

/// A trajectory's embedding: the mean of its step features (`[steps, dim]` row-major).
pub fn trajectory_embedding(features: &[f32], steps: usize) -> Vec<f32> {
    let steps = steps.max(1);
    let dim = features.len() / steps;
    let mut mean = vec![0f32; dim];
    for step in features.chunks_exact(dim.max(1)) {
        for (m, v) in mean.iter_mut().zip(step) {
            *m += v / steps as f32;
        }
    }
    mean
}

fn distance2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Unit vectors after removing the candidates' mean, so distances compare directions that differ
/// within the batch rather than what every step of a sentence encoder shares.
fn centred_unit(rows: &[&[f32]]) -> Vec<Vec<f32>> {
    let dim = rows.first().map_or(0, |r| r.len());
    let mut mean = vec![0f32; dim];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(*r) {
            *m += v / rows.len() as f32;
        }
    }
    rows.iter()
        .map(|r| {
            let c: Vec<f32> = r.iter().zip(&mean).map(|(v, m)| v - m).collect();
            let norm = c.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            c.into_iter().map(|v| v / norm).collect()
        })
        .collect()
}

/// `k` rows of the batch: uncertain and spread over clusters (see the module doc). Falls back to
/// the most uncertain rows when there are no embeddings or no more candidates than picks.
pub fn diverse_picks(
    uncertainty: &[f32],
    embeddings: &[Vec<f32>],
    k: usize,
    rng: &mut NormalRng,
) -> Vec<usize> {
    let candidates = top_uncertain(uncertainty, (BETA * k).min(uncertainty.len()));
    if k == 0 || candidates.len() <= k || embeddings.len() != uncertainty.len() {
        candidates.into_iter().take(k).collect()
    } else {
        let points = centred_unit(
            &candidates
                .iter()
                .map(|&i| embeddings[i].as_slice())
                .collect::<Vec<_>>(),
        );
        let weights: Vec<f32> = candidates
            .iter()
            .map(|&i| uncertainty[i].max(0.0) + 1e-6)
            .collect();
        let centres = weighted_kmeans(&points, &weights, k, rng);
        let mut picks: Vec<usize> = Vec::with_capacity(k);
        for centre in &centres {
            let closest = (0..points.len())
                .filter(|&p| !picks.contains(&candidates[p]))
                .min_by(|&a, &b| {
                    distance2(&points[a], centre).total_cmp(&distance2(&points[b], centre))
                });
            if let Some(p) = closest {
                picks.push(candidates[p]);
            }
        }
        // empty clusters left picks short: top up with the most uncertain remaining candidates
        for &c in &candidates {
            if picks.len() >= k {
                break;
            }
            if !picks.contains(&c) {
                picks.push(c);
            }
        }
        picks
    }
}

/// k-means++ seeding, then Lloyd iterations with weighted centres.
fn weighted_kmeans(
    points: &[Vec<f32>],
    weights: &[f32],
    k: usize,
    rng: &mut NormalRng,
) -> Vec<Vec<f32>> {
    let pick_weighted = |scores: &[f32], rng: &mut NormalRng| -> usize {
        let total: f64 = scores.iter().map(|&s| s as f64).sum();
        let mut target = rng.next_unit() * total;
        for (i, &s) in scores.iter().enumerate() {
            target -= s as f64;
            if target <= 0.0 {
                return i;
            }
        }
        scores.len() - 1
    };
    let mut centres = vec![points[pick_weighted(weights, rng)].clone()];
    while centres.len() < k {
        let scores: Vec<f32> = points
            .iter()
            .zip(weights)
            .map(|(p, w)| {
                w * centres
                    .iter()
                    .map(|c| distance2(p, c))
                    .fold(f32::INFINITY, f32::min)
            })
            .collect();
        if scores.iter().all(|&s| s <= 0.0) {
            break;
        }
        centres.push(points[pick_weighted(&scores, rng)].clone());
    }
    let dim = points[0].len();
    for _ in 0..LLOYD_ITERATIONS {
        let mut sums = vec![vec![0f32; dim]; centres.len()];
        let mut mass = vec![0f32; centres.len()];
        for (p, &w) in points.iter().zip(weights) {
            let nearest = (0..centres.len())
                .min_by(|&a, &b| distance2(p, &centres[a]).total_cmp(&distance2(p, &centres[b])))
                .unwrap_or(0);
            mass[nearest] += w;
            for (s, v) in sums[nearest].iter_mut().zip(p) {
                *s += w * v;
            }
        }
        let mut moved = false;
        for ((centre, sum), m) in centres.iter_mut().zip(sums).zip(mass) {
            if m > 0.0 {
                let next: Vec<f32> = sum.into_iter().map(|s| s / m).collect();
                moved |= distance2(&next, centre) > 1e-10;
                *centre = next;
            }
        }
        if !moved {
            break;
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_spread_over_clusters_instead_of_the_top_of_one() {
        // six rows near (1, 0), the most uncertain; six near (0, 1), less uncertain
        let mut embeddings = Vec::new();
        let mut uncertainty = Vec::new();
        for i in 0..6 {
            embeddings.push(vec![1.0, 0.01 * i as f32]);
            uncertainty.push(5.0 - 0.1 * i as f32);
        }
        for i in 0..6 {
            embeddings.push(vec![0.01 * i as f32, 1.0]);
            uncertainty.push(2.0 - 0.1 * i as f32);
        }
        let mut rng = NormalRng::new(3);
        let picks = diverse_picks(&uncertainty, &embeddings, 2, &mut rng);
        assert_eq!(picks.len(), 2);
        assert!(picks.iter().any(|&p| p < 6) && picks.iter().any(|&p| p >= 6));
        // plain uncertainty would take two rows of the first cluster
        assert_eq!(top_uncertain(&uncertainty, 2), vec![0, 1]);
        // no more candidates than picks: the most uncertain
        assert_eq!(
            diverse_picks(&uncertainty[..2], &embeddings[..2], 2, &mut rng),
            vec![0, 1]
        );
    }

    #[test]
    fn the_embedding_is_the_mean_step() {
        assert_eq!(
            trajectory_embedding(&[1.0, 2.0, 3.0, 6.0], 2),
            vec![2.0, 4.0]
        );
    }
}
