//! Which trajectories of a streamed batch get labelled.

use std::fmt;

use crate::model::init::NormalRng;
use crate::select::Decision;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// ActPRM's threshold rule: label every uncertain trajectory.
    ActPrm,
    /// ActPRM ranked: label the `rate` most uncertain fraction of each batch.
    ActPrmRate(f64),
    /// Label a random `rate` fraction of each batch (the baseline at equal budget).
    Random(f64),
    /// Label everything.
    Full,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::ActPrm => write!(f, "actprm"),
            Strategy::ActPrmRate(r) => write!(f, "actprm@{:.0}%", r * 100.0),
            Strategy::Random(r) => write!(f, "random@{:.0}%", r * 100.0),
            Strategy::Full => write!(f, "full"),
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
        match s.split_once('@') {
            None if s == "actprm" => Ok(Strategy::ActPrm),
            None if s == "full" => Ok(Strategy::Full),
            Some(("actprm", r)) => Ok(Strategy::ActPrmRate(rate(r)?)),
            Some(("random", r)) => Ok(Strategy::Random(rate(r)?)),
            _ => Err(format!(
                "unknown strategy {s:?}: expected actprm, actprm@RATE, random@RATE or full"
            )),
        }
    }
}

impl Strategy {
    /// Indices of the batch to label.
    pub fn choose(&self, decisions: &[Decision], rng: &mut NormalRng) -> Vec<usize> {
        let n = decisions.len();
        let take = |rate: f64| ((n as f64 * rate).round() as usize).min(n);
        match *self {
            Strategy::Full => (0..n).collect(),
            Strategy::ActPrm => (0..n).filter(|&i| decisions[i].selected).collect(),
            Strategy::ActPrmRate(rate) => {
                let uncertainty: Vec<f32> = decisions.iter().map(|d| d.uncertainty).collect();
                crate::select::most_uncertain(&uncertainty, rate)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &chosen)| chosen.then_some(i))
                    .collect()
            }
            Strategy::Random(rate) => {
                let mut order: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    let j = ((rng.next_unit() * (i + 1) as f64) as usize).min(i);
                    order.swap(i, j);
                }
                let mut chosen = order[..take(rate)].to_vec();
                chosen.sort();
                chosen
            }
        }
    }
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

    #[test]
    fn strategies_pick_what_they_promise() {
        let ds = [d(0.5, false), d(3.0, true), d(1.5, true), d(0.9, false)];
        let mut rng = NormalRng::new(1);
        assert_eq!(Strategy::ActPrm.choose(&ds, &mut rng), vec![1, 2]);
        assert_eq!(Strategy::ActPrmRate(0.25).choose(&ds, &mut rng), vec![1]);
        assert_eq!(
            Strategy::ActPrmRate(0.75).choose(&ds, &mut rng),
            vec![1, 2, 3]
        );
        assert_eq!(Strategy::Full.choose(&ds, &mut rng).len(), 4);
        assert_eq!(Strategy::Random(0.5).choose(&ds, &mut rng).len(), 2);
        assert_eq!(
            "random@50%".parse::<Strategy>().unwrap(),
            Strategy::Random(0.5)
        );
        assert_eq!(
            "actprm@0.3".parse::<Strategy>().unwrap(),
            Strategy::ActPrmRate(0.3)
        );
        assert!("greedy".parse::<Strategy>().is_err());
    }
}
