//! Length bucketing: windows sorted by length and packed under a padded-token budget, so padding
//! stays small and one backbone call never exceeds the memory the budget implies.

/// What one backbone call may hold.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Padded tokens: `count * longest`.
    pub token_budget: usize,
    /// Windows.
    pub max_batch: usize,
    /// `count * longest * longest`: the attention scores per head of a kernel that
    /// materialises them (`usize::MAX`: no such kernel).
    pub attention_budget: usize,
}

impl CallLimits {
    /// The longest packed sequence whose attention scores fit the attention budget, and at
    /// most the token budget.
    pub fn pack_capacity(&self) -> usize {
        self.token_budget.min(self.attention_budget.isqrt())
    }
}

/// Groups of window indices; within a group, `count * longest <= token_budget`,
/// `count * longest² <= attention_budget` and `count <= max_batch` (a single window beyond a
/// budget gets a group of its own).
pub fn plan_batches(lengths: &[usize], limits: CallLimits) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending, so the newcomer is the longest of the group.
        let count = current.len() + 1;
        let padded = count * lengths[i];
        let scores = padded.saturating_mul(lengths[i]);
        let full = padded > limits.token_budget
            || scores > limits.attention_budget
            || current.len() >= limits.max_batch.max(1);
        if !current.is_empty() && full {
            groups.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_respect_budget_and_cover_every_window_once() {
        let lengths = [100, 10, 500, 12, 90, 11, 480];
        let groups = plan_batches(&lengths, limits(1000, 8));
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for g in &groups {
            let longest = g.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(g.len() == 1 || g.len() * longest <= 1000, "{g:?}");
        }
        // the three short windows share a call
        assert!(groups
            .iter()
            .any(|g| g.contains(&1) && g.contains(&3) && g.contains(&5)));
    }

    fn limits(token_budget: usize, max_batch: usize) -> CallLimits {
        CallLimits {
            token_budget,
            max_batch,
            attention_budget: usize::MAX,
        }
    }

    #[test]
    fn max_batch_caps_group_size() {
        let groups = plan_batches(&[5; 10], limits(10_000, 4));
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }

    #[test]
    fn the_attention_budget_caps_long_windows_not_short_ones() {
        // 8 windows of 100 tokens and 4 of 1000, a token budget that takes 4 of the long ones
        let lengths: Vec<usize> = [100; 8].into_iter().chain([1000; 4]).collect();
        let capped = CallLimits {
            attention_budget: 2_000_000,
            ..limits(4000, 32)
        };
        let groups = plan_batches(&lengths, capped);
        let sizes = |long: bool| -> Vec<usize> {
            groups
                .iter()
                .filter(|g| (lengths[g[0]] == 1000) == long)
                .map(Vec::len)
                .collect()
        };
        // 2 x 1000² = 2e6 scores per head: two long windows a call; the short ones all together
        assert_eq!(sizes(true), vec![2, 2]);
        assert_eq!(sizes(false), vec![8]);
        assert_eq!(plan_batches(&lengths, limits(4000, 32)).len(), 2);
        // one window beyond the budget still runs, alone
        let alone = CallLimits {
            attention_budget: 10,
            ..limits(4000, 32)
        };
        assert!(plan_batches(&[1000, 1000], alone)
            .iter()
            .all(|g| g.len() == 1));
        assert_eq!(capped.pack_capacity(), 1414);
    }
}
