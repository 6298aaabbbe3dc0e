//! Which trajectories of a streamed batch get labelled: Algorithm 1's choice, one function for
//! `actprm active` (its `--keep-rate` / `--picks` name a strategy) and for `actprm experiment`,
//! which adds the baselines (random, warm starts, full) beside the loop's own rules.

use std::fmt;

use super::{Decision, Keep, RatePicks, RateQuota};
use crate::rng::NormalRng;

/// A rate as a percentage without trailing zeros (`0.1` -> `10`, `0.025` -> `2.5`).
pub fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// ActPRM's threshold rule: label every uncertain trajectory.
    ActPrm,
    /// Label the most uncertain `rate` of the stream, batch by batch (`actprm@RATE`). `warm`
    /// (`warm@RATE`): the first part of the stream is chosen at random, so the heads have learned
    /// something before their disagreement decides (cold heads sit at p = 0.5 and their
    /// uncertainty is uniform). `RatePicks::Diverse` (`diverse@RATE`): the picks of a batch are
    /// spread over feature clusters of its most uncertain rows instead of being its top outliers.
    Uncertain {
        rate: f64,
        warm: bool,
        picks: RatePicks,
    },
    /// Label a random `rate` of the stream (the baseline at equal budget).
    Random(f64),
    /// Label everything.
    Full,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rate() {
            Some(r) => write!(f, "{}@{}%", self.family(), percent(r)),
            None => write!(f, "{}", self.family()),
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rate = |r: &str| -> Result<f64, String> {
            let v: f64 = r
                .trim_end_matches('%')
                .parse()
                .map_err(|_| format!("bad rate in {s:?}"))?;
            let v = if r.ends_with('%') { v / 100.0 } else { v };
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("rate in {s:?} is outside 0..1"))
            }
        };
        let uncertain = |r: &str, warm: bool, picks: RatePicks| -> Result<Self, String> {
            Ok(Strategy::Uncertain {
                rate: rate(r)?,
                warm,
                picks,
            })
        };
        let (ranked, diverse) = (RatePicks::MostUncertain, RatePicks::Diverse);
        match s.split_once('@') {
            // `actprm-threshold` is how the rule is displayed (its curve's name)
            None if s == "actprm" || s == "actprm-threshold" => Ok(Strategy::ActPrm),
            None if s == "full" => Ok(Strategy::Full),
            Some(("actprm", r)) => uncertain(r, false, ranked),
            Some(("warm", r)) => uncertain(r, true, ranked),
            Some(("diverse", r)) => uncertain(r, false, diverse),
            Some(("warm-diverse", r)) => uncertain(r, true, diverse),
            Some(("random", r)) => Ok(Strategy::Random(rate(r)?)),
            _ => Err(format!(
                "unknown strategy {s:?}: expected actprm, full, or actprm, warm, diverse, \
                 warm-diverse or random with @RATE"
            )),
        }
    }
}

/// Read as written on the command line; written as displayed (which reads back).
impl<'de> serde::Deserialize<'de> for Strategy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(deserializer)?;
        spec.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Strategy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Strategy".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "actprm, full, or actprm, warm, diverse, warm-diverse or random with @RATE (e.g. diverse@10%)",
        })
    }
}

/// A batch as a strategy sees it.
pub struct Candidates<'a> {
    pub decisions: &'a [Decision],
    /// One embedding per row (the mean of its step features); only diverse strategies read it.
    pub embeddings: &'a [Vec<f32>],
    /// Still in the warm start: warm strategies choose at random.
    pub warm_start: bool,
    /// How many rows the budget allows from this batch (rate strategies).
    pub quota: usize,
}

impl Strategy {
    /// The most uncertain (or, with `RatePicks::Diverse`, spread) `rate` of each batch.
    pub fn uncertain(rate: f64, picks: RatePicks) -> Self {
        Strategy::Uncertain {
            rate,
            warm: false,
            picks,
        }
    }

    /// What `actprm active` runs: ActPRM's threshold rule, or a keep rate taken by `picks`.
    pub fn of_loop(keep: Keep, picks: RatePicks) -> Self {
        match keep {
            Keep::Rule => Strategy::ActPrm,
            Keep::Rate(rate) => Strategy::Uncertain {
                rate,
                warm: false,
                picks,
            },
        }
    }

    /// The strategy without its rate: the name of its budget curve.
    pub fn family(&self) -> &'static str {
        match self {
            Strategy::ActPrm => "actprm-threshold",
            Strategy::Full => "full",
            Strategy::Random(_) => "random",
            Strategy::Uncertain { warm, picks, .. } => match (warm, picks) {
                (false, RatePicks::MostUncertain) => "actprm",
                (true, RatePicks::MostUncertain) => "warm",
                (false, RatePicks::Diverse) => "diverse",
                (true, RatePicks::Diverse) => "warm-diverse",
            },
        }
    }

    /// The share of the stream it labels, for strategies with a budget.
    pub fn rate(&self) -> Option<f64> {
        match *self {
            Strategy::Uncertain { rate, .. } | Strategy::Random(rate) => Some(rate),
            Strategy::ActPrm | Strategy::Full => None,
        }
    }

    /// How many of a batch's `rows` it may take: a rate strategy's grant from `quota` (the rate
    /// holds over the stream), else every row (`quota` is left as it was).
    pub fn quota(&self, quota: &mut RateQuota, rows: usize) -> usize {
        match self.rate() {
            Some(rate) => quota.grant(rate, rows),
            None => rows,
        }
    }

    pub fn needs_embeddings(&self) -> bool {
        matches!(
            self,
            Strategy::Uncertain {
                picks: RatePicks::Diverse,
                ..
            }
        )
    }

    /// Each row's embedding (the mean of its step features, given as `(features, steps)`) when
    /// this strategy clusters by them; else none.
    pub fn embeddings<'a>(&self, rows: impl Iterator<Item = (&'a [f32], usize)>) -> Vec<Vec<f32>> {
        if !self.needs_embeddings() {
            return Vec::new();
        }
        rows.map(|(features, steps)| super::trajectory_embedding(features, steps))
            .collect()
    }

    /// Indices of the batch to label, ascending.
    pub fn choose(&self, batch: &Candidates, rng: &mut NormalRng) -> Vec<usize> {
        let n = batch.decisions.len();
        let quota = batch.quota.min(n);
        let mut chosen = match *self {
            Strategy::Full => (0..n).collect(),
            Strategy::ActPrm => (0..n).filter(|&i| batch.decisions[i].selected).collect(),
            Strategy::Random(_) => random_picks(n, quota, rng),
            Strategy::Uncertain { warm: true, .. } if batch.warm_start => {
                random_picks(n, quota, rng)
            }
            Strategy::Uncertain { picks, .. } => {
                let uncertainty: Vec<f32> = batch.decisions.iter().map(|d| d.uncertainty).collect();
                picks.pick(&uncertainty, batch.embeddings, quota, rng)
            }
        };
        chosen.sort_unstable();
        chosen
    }

    /// [`Strategy::choose`] as a mask over the batch's rows (what `label_and_train` takes).
    pub fn choose_mask(&self, batch: &Candidates, rng: &mut NormalRng) -> Vec<bool> {
        let mut mask = vec![false; batch.decisions.len()];
        for i in self.choose(batch, rng) {
            mask[i] = true;
        }
        mask
    }
}

fn random_picks(n: usize, k: usize, rng: &mut NormalRng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((rng.next_unit() * (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    order.truncate(k);
    order
}

impl serde::Serialize for Strategy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(u: f32, selected: bool) -> Decision {
        Decision {
            selected,
            aleatoric: selected,
            epistemic: false,
            uncertainty: u,
        }
    }

    fn view(ds: &[Decision], quota: usize, warm_start: bool) -> Candidates<'_> {
        Candidates {
            decisions: ds,
            embeddings: &[],
            warm_start,
            quota,
        }
    }

    #[test]
    fn strategies_pick_what_they_promise() {
        let ds = [d(0.5, false), d(3.0, true), d(1.5, true), d(0.9, false)];
        let mut rng = NormalRng::new(1);
        assert_eq!(
            Strategy::ActPrm.choose(&view(&ds, 0, false), &mut rng),
            vec![1, 2]
        );
        let ranked: Strategy = "actprm@25%".parse().unwrap();
        assert_eq!(ranked.choose(&view(&ds, 1, false), &mut rng), vec![1]);
        assert_eq!(ranked.choose(&view(&ds, 3, false), &mut rng), vec![1, 2, 3]);
        assert_eq!(
            Strategy::Full.choose(&view(&ds, 0, false), &mut rng).len(),
            4
        );
        assert_eq!(
            Strategy::Random(0.5)
                .choose(&view(&ds, 2, false), &mut rng)
                .len(),
            2
        );
        // a warm strategy is random during the warm start, ranked after it
        let warm: Strategy = "warm@25%".parse().unwrap();
        assert_eq!(warm.choose(&view(&ds, 1, false), &mut rng), vec![1]);
        let draws: std::collections::HashSet<Vec<usize>> = (0..40)
            .map(|_| warm.choose(&view(&ds, 1, true), &mut rng))
            .collect();
        assert!(draws.len() > 1, "{draws:?}");
        assert_eq!(
            "random@50%".parse::<Strategy>().unwrap(),
            Strategy::Random(0.5)
        );
        assert_eq!(
            "diverse@2.5%".parse::<Strategy>().unwrap().to_string(),
            "diverse@2.5%"
        );
        assert_eq!(
            "warm-diverse@0.05".parse::<Strategy>().unwrap().to_string(),
            "warm-diverse@5%"
        );
        assert!("greedy".parse::<Strategy>().is_err());
        assert!("warm@120%".parse::<Strategy>().is_err());
    }
}
