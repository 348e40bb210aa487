//! A count of calls in flight with a maximum that refuses rather than
//! queues: the load shedder's and the bulkhead's one mechanism.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// At most `max` places; a place is taken before the call it guards and
/// given back when its [`Slot`] drops, whatever happens to the call.
#[derive(Debug)]
pub(crate) struct Slots {
    max: usize,
    in_flight: AtomicUsize,
    gauge: metrics::Gauge,
}

impl Slots {
    pub(crate) fn new(max: usize, gauge: metrics::Gauge) -> Arc<Self> {
        Arc::new(Self {
            max,
            in_flight: AtomicUsize::new(0),
            gauge,
        })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A place, or `None` when all `max` are taken (nothing is waited for).
    #[inline]
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        // Made before anything else can fail, so the place always comes back.
        let slot = Slot(Arc::clone(self));
        if before >= self.max {
            return None;
        }
        self.gauge.set((before + 1) as f64);
        Some(slot)
    }
}

/// One call's place, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let left = self
            .0
            .in_flight
            .fetch_sub(1, Ordering::AcqRel)
            .saturating_sub(1);
        self.0.gauge.set(left as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_refused_beyond_the_maximum_and_come_back_when_dropped() {
        let slots = Slots::new(2, metrics::Gauge::noop());
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        assert_eq!(slots.in_flight(), 2, "a refused take gives its count back");
        drop(a);
        assert!(slots.try_take().is_some());
        assert_eq!(slots.in_flight(), 1);
    }
}
