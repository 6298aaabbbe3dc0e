//! Fault injection for the crash tests: `ACTPRM_FAILPOINT=NAME:N` makes the N-th call of
//! `hit("NAME")` in this process panic (N = 1 when omitted), so a test can crash one stage of a
//! real run and check that the run fails loudly and loses nothing; `NAME:sleep-ms=MS` makes
//! every call wait instead, so a test can kill a process while it is surely inside that stage.
//! Debug builds only: a release binary ignores the variable.

/// Panics (or waits) here if `ACTPRM_FAILPOINT` names this point.
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::OnceLock;
        enum Action {
            PanicAt(u64),
            Sleep(std::time::Duration),
        }
        static TARGET: OnceLock<Option<(String, Action)>> = OnceLock::new();
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let target = TARGET.get_or_init(|| {
            let spec = std::env::var("ACTPRM_FAILPOINT").ok()?;
            let (point, action) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
            let action = match action.strip_prefix("sleep-ms=") {
                Some(ms) => Action::Sleep(std::time::Duration::from_millis(ms.parse().ok()?)),
                None => Action::PanicAt(action.parse().unwrap_or(1)),
            };
            Some((point.to_string(), action))
        });
        match target {
            Some((point, Action::Sleep(pause))) if point == name => std::thread::sleep(*pause),
            Some((point, Action::PanicAt(n)))
                if point == name && CALLS.fetch_add(1, Ordering::SeqCst) + 1 == *n =>
            {
                panic!("failpoint {name} hit (ACTPRM_FAILPOINT)")
            }
            _ => {}
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
