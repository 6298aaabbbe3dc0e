//! The judge's hard budget on requests and generated tokens, shared by every request in flight.

use std::sync::Mutex;

use tokio::sync::Notify;

/// The hard budget. A request is admitted only if it cannot push the totals past the limits even
/// if it generates its full `max_tokens`; when only in-flight reservations are in the way, it waits
/// for them to settle rather than giving up early.
pub(super) struct Budget {
    pub(super) max_requests: Option<u64>,
    pub(super) max_tokens: Option<u64>,
    pub(super) state: Mutex<BudgetState>,
    pub(super) settled: Notify,
}

#[derive(Default)]
pub(super) struct BudgetState {
    pub(super) requests: u64,
    pub(super) charged: u64,
    pub(super) reserved: u64,
}

pub(super) enum Admission {
    Admitted,
    Wait,
    Spent(String),
}

impl Budget {
    pub(super) fn try_reserve(&self, tokens: u64) -> Admission {
        let Ok(mut s) = self.state.lock() else {
            return Admission::Spent("budget lock poisoned".into());
        };
        if let Some(max) = self.max_requests {
            if s.requests >= max {
                return Admission::Spent(format!("the request budget ({max}) is spent"));
            }
        }
        if let Some(max) = self.max_tokens {
            // saturating: a server may report any usage, even u64::MAX tokens
            if s.charged.saturating_add(tokens) > max {
                return Admission::Spent(format!(
                    "the token budget ({max}) is spent: {} used, a request may generate up to {tokens}",
                    s.charged
                ));
            }
            if s.charged.saturating_add(s.reserved).saturating_add(tokens) > max {
                return Admission::Wait;
            }
        }
        s.requests += 1;
        s.reserved += tokens;
        Admission::Admitted
    }

    pub(super) async fn reserve(&self, tokens: u64) -> Result<(), String> {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_reserve(tokens) {
                Admission::Admitted => return Ok(()),
                Admission::Spent(why) => return Err(why),
                Admission::Wait => notified.await,
            }
        }
    }

    pub(super) fn settle(&self, reserved: u64, charged: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.reserved = s.reserved.saturating_sub(reserved);
            s.charged = s.charged.saturating_add(charged);
        }
        self.settled.notify_waiters();
    }
}
