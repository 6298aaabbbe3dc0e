//! Fault injection for the crash tests: `ACTPRM_FAILPOINT=NAME:N` makes the N-th call of
//! `hit("NAME")` in this process panic (N = 1 when omitted), so a test can crash one stage of a
//! real run and check that the run fails loudly and loses nothing. Debug builds only: a release
//! binary ignores the variable.

/// Panics here if `ACTPRM_FAILPOINT` names this point and its count is reached.
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::OnceLock;
        static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let target = TARGET.get_or_init(|| {
            let spec = std::env::var("ACTPRM_FAILPOINT").ok()?;
            let (point, n) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
            Some((point.to_string(), n.parse().unwrap_or(1)))
        });
        if let Some((point, n)) = target {
            if point == name && CALLS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
                panic!("failpoint {name} hit (ACTPRM_FAILPOINT)");
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
