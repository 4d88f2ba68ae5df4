//! The prefetch window sized to the traffic: how many unacknowledged deliveries the broker may push
//! ahead of our acknowledgements.
//!
//! Deliveries are acknowledged only after their batch commits, so the window must hold several
//! batches, and bigger batches are what make single events cheap to store: each commit rewrites
//! every page its batch touched, so a 1,000-event commit wrote 3,500 bytes per event, a 5,000-event
//! one 1,800-2,000 and a 10,000-event one 1,330-1,380 (`cargo bench --bench throughput --
//! batch=N`). That needs a window of 40,000 deliveries. Every delivery in the window may be held,
//! and decoded, until its batch commits, and CB's zip bundles are a hundred times the size of a
//! single event: 40,000 of them would take gigabytes. So the window is counted in bytes as well as
//! in deliveries: `amqp.prefetch_bytes / mean body size`, at most `amqp.prefetch`, at least
//! [`MIN_PREFETCH`].
//!
//! The broker applies a consumer's prefetch when the consumer is created (a `basic.qos` on the
//! channel afterwards only applies to later consumers), so a new window takes a new subscription
//! ([`crate::daemon`] cancels the consumer, drains what it had received, and subscribes again).
//! To keep that rare, the window only moves when the traffic calls for half or twice the current
//! one, and only after [`SETTLE_DELIVERIES`] deliveries at the current one.

/// The smallest window: even very large bundles keep the writer fed with something.
pub const MIN_PREFETCH: u16 = 64;

/// Deliveries seen at one window before it may change again; also the weight of the running mean
/// (an exponential moving average over about this many deliveries).
pub const SETTLE_DELIVERIES: u64 = 256;

/// Body size assumed before any delivery was seen: the first window errs on the small side (a
/// backlog of bundles must not flood memory before the first measurement).
const ASSUMED_BODY_BYTES: f64 = 16.0 * 1024.0;

/// The window and what it is computed from.
#[derive(Debug, Clone)]
pub struct Window {
    max: u16,
    budget_bytes: u64,
    /// Running mean body size; `None` until the first delivery.
    mean_bytes: Option<f64>,
    current: u16,
    seen_at_current: u64,
}

impl Window {
    /// At most `max` deliveries and about `budget_bytes` of bodies in flight.
    pub fn new(max: u16, budget_bytes: u64) -> Window {
        let mut w = Window {
            max: max.max(1),
            budget_bytes,
            mean_bytes: None,
            current: 0,
            seen_at_current: 0,
        };
        w.current = w.wanted();
        w
    }

    /// The window to subscribe with now.
    pub fn current(&self) -> u16 {
        self.current
    }

    /// Mean body size the window is computed from.
    pub fn mean_body_bytes(&self) -> f64 {
        self.mean_bytes.unwrap_or(ASSUMED_BODY_BYTES)
    }

    /// Account for deliveries of these body sizes.
    pub fn observe(&mut self, bodies: impl IntoIterator<Item = usize>) {
        let weight = 1.0 / SETTLE_DELIVERIES as f64;
        for len in bodies {
            let len = len.max(1) as f64;
            // The first measurement replaces the assumption outright.
            self.mean_bytes = Some(self.mean_bytes.map_or(len, |m| m + (len - m) * weight));
            self.seen_at_current += 1;
        }
    }

    /// The window the traffic calls for.
    fn wanted(&self) -> u16 {
        let floor = MIN_PREFETCH.min(self.max);
        let by_bytes = self.budget_bytes as f64 / self.mean_body_bytes();
        (by_bytes.min(f64::from(self.max)) as u16).max(floor)
    }

    /// A new window when the traffic has moved far enough from the current one; the caller
    /// resubscribes with it.
    pub fn resize(&mut self) -> Option<u16> {
        if self.seen_at_current < SETTLE_DELIVERIES {
            return None;
        }
        let want = self.wanted();
        let (cur, w) = (u32::from(self.current), u32::from(want));
        let far = w >= cur * 2 || w * 2 <= cur || (w == u32::from(self.max) && w > cur);
        if !far {
            return None;
        }
        self.current = want;
        self.seen_at_current = 0;
        Some(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn settle(w: &mut Window, len: usize) -> Option<u16> {
        w.observe(std::iter::repeat_n(len, SETTLE_DELIVERIES as usize * 4));
        w.resize()
    }

    #[test]
    fn starts_small_until_it_has_seen_the_traffic() {
        let w = Window::new(20_000, 16 * MIB);
        assert_eq!(w.current(), 1024);
    }

    #[test]
    fn small_messages_open_the_window_to_its_maximum() {
        let mut w = Window::new(20_000, 16 * MIB);
        assert_eq!(settle(&mut w, 300), Some(20_000));
        assert_eq!(w.current(), 20_000);
        assert_eq!(settle(&mut w, 300), None, "no change without cause");
    }

    #[test]
    fn bundles_close_it_to_the_byte_budget() {
        let mut w = Window::new(20_000, 16 * MIB);
        assert_eq!(settle(&mut w, 300), Some(20_000));
        // 4.5 KB zips: about 3,700 in 16 MiB.
        let n = settle(&mut w, 4_500).expect("shrinks");
        assert!((3_600..=3_800).contains(&n), "{n}");
        // Huge bundles: never below the floor.
        assert_eq!(settle(&mut w, 4 * MIB as usize), Some(MIN_PREFETCH));
    }

    #[test]
    fn small_moves_do_not_resubscribe() {
        let mut w = Window::new(20_000, 16 * MIB);
        let n = settle(&mut w, 4_000).unwrap();
        // 30% larger bodies: well within half to twice the window.
        w.observe(std::iter::repeat_n(5_200, 10_000));
        assert_eq!(w.resize(), None);
        assert_eq!(w.current(), n);
    }

    #[test]
    fn waits_for_enough_deliveries_before_moving() {
        let mut w = Window::new(20_000, 16 * MIB);
        w.observe(std::iter::repeat_n(300, SETTLE_DELIVERIES as usize - 1));
        assert_eq!(w.resize(), None);
        w.observe([300]);
        assert_eq!(w.resize(), Some(20_000));
    }

    #[test]
    fn a_maximum_below_the_floor_is_kept() {
        let mut w = Window::new(10, 16 * MIB);
        assert_eq!(w.current(), 10);
        assert_eq!(settle(&mut w, 4 * MIB as usize), None);
        assert_eq!(w.current(), 10);
    }
}
