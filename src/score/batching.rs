//! Length bucketing: windows sorted by length and packed under a padded-token budget, so padding
//! stays small and one backbone call never exceeds the memory the budget implies.

/// Groups of window indices; within a group, `count * longest <= token_budget` (a single window
/// longer than the budget gets a group of its own) and `count <= max_batch`.
pub fn plan_batches(lengths: &[usize], token_budget: usize, max_batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending, so the newcomer is the longest of the group.
        let padded = (current.len() + 1) * lengths[i];
        if !current.is_empty() && (padded > token_budget || current.len() >= max_batch.max(1)) {
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
        let groups = plan_batches(&lengths, 1000, 8);
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

    #[test]
    fn max_batch_caps_group_size() {
        let groups = plan_batches(&[5; 10], 10_000, 4);
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }
}
