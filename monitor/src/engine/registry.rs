//! Event subscriptions, user-defined events and per-core timers.

use crate::api::{ActionError, Event, Hook};
use crate::config::{ConfigError, MAX_TIMERS, MAX_USER_EVENTS};

#[derive(Clone, Copy, Debug)]
pub(super) struct Ude {
    pub(super) parent: Event,
    pub(super) key: u32,
    /// Allocated with `alloc_event`: no filter, raised only by `Ctx::raise_event`.
    pub(super) floating: bool,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Timer {
    pub(super) id: u32,
    pub(super) deadline: u64,
    pub(super) period: u64,
}

/// Event subscriptions, user-defined events and timers of one monitor.
///
/// Subscriptions apply to every flow of the monitor (mOS: callbacks on the listener socket).
#[derive(Debug)]
pub struct Registry {
    pub(super) subs: [u64; 3],
    /// Per hook: events worth raising (subscribed, or the parent of a needed user event).
    pub(super) interest: [u64; 3],
    /// The union of `interest` over the hooks (one test on the packet path).
    pub(super) any_interest: u64,
    /// Per hook: user events with a subscribed descendant (or self).
    pub(super) needed: [u64; 3],
    pub(super) udes: heapless::Vec<Ude, MAX_USER_EVENTS>,
    pub(super) timers: heapless::Vec<Timer, MAX_TIMERS>,
    pub(super) now: u64,
}

impl Registry {
    pub(super) fn new() -> Self {
        Registry {
            subs: [0; 3],
            interest: [0; 3],
            any_interest: 0,
            needed: [0; 3],
            udes: heapless::Vec::new(),
            timers: heapless::Vec::new(),
            now: 0,
        }
    }

    pub(super) fn is_event(&self, ev: Event) -> bool {
        ev.is_builtin() && Event::BUILTIN.contains(&ev) || self.ude_index(ev).is_some()
    }

    fn ude_index(&self, ev: Event) -> Option<usize> {
        let bit = ev.0.trailing_zeros();
        if ev.0.count_ones() != 1 || bit < Event::FIRST_UDE_BIT {
            return None;
        }
        let i = (bit - Event::FIRST_UDE_BIT) as usize;
        (i < self.udes.len()).then_some(i)
    }

    /// Call `on_event` for `ev` at `hook` (for every flow). Returns false if `ev` is no event.
    pub fn subscribe(&mut self, ev: Event, hook: Hook) -> bool {
        if !self.is_event(ev) {
            return false;
        }
        self.subs[hook as usize] |= ev.0;
        self.recompute();
        true
    }

    /// Stop calling `on_event` for `ev` at `hook`.
    pub fn unsubscribe(&mut self, ev: Event, hook: Hook) {
        self.subs[hook as usize] &= !ev.0;
        self.recompute();
    }

    /// True if `on_event` is called for `ev` at `hook`.
    pub fn is_subscribed(&self, ev: Event, hook: Hook) -> bool {
        self.subs[hook as usize] & ev.0 != 0
    }

    /// Define a user event: raised when `parent` (built-in or user-defined, so children of
    /// children work) is raised and `Middlebox::filter(key, ..)` returns true. An identical
    /// definition (same parent and key) returns the existing id.
    pub fn define(&mut self, parent: Event, key: u32) -> Result<Event, ConfigError> {
        if !self.is_event(parent) {
            return Err(ConfigError::BadEvent);
        }
        if let Some(i) = self
            .udes
            .iter()
            .position(|u| u.parent == parent && u.key == key && !u.floating)
        {
            return Ok(Event(1 << (Event::FIRST_UDE_BIT as usize + i)));
        }
        self.push(Ude {
            parent,
            key,
            floating: false,
        })
    }

    /// Allocate a floating user event under `parent` (mOS `mtcp_alloc_event`): it has no
    /// filter and is raised only by `Ctx::raise_event`, from a callback or a timer, for a flow
    /// or none. Children defined on it with [`Registry::define`] are filtered when it is
    /// raised. Each call allocates a new id.
    pub fn alloc_event(&mut self, parent: Event) -> Result<Event, ConfigError> {
        if !self.is_event(parent) {
            return Err(ConfigError::BadEvent);
        }
        self.push(Ude {
            parent,
            key: 0,
            floating: true,
        })
    }

    fn push(&mut self, u: Ude) -> Result<Event, ConfigError> {
        let i = self.udes.len();
        self.udes.push(u).map_err(|_| ConfigError::BadEvent)?;
        self.recompute();
        Ok(Event(1 << (Event::FIRST_UDE_BIT as usize + i)))
    }

    /// Arm timer `id` to fire `after_us` from now, then every `period_us` if non-zero.
    /// Re-arming an armed id replaces it. `Err(QueueFull)` if `MAX_TIMERS` are armed.
    pub fn set_timer(&mut self, id: u32, after_us: u64, period_us: u64) -> Result<(), ActionError> {
        let t = Timer {
            id,
            deadline: self.now.saturating_add(after_us),
            period: period_us,
        };
        if let Some(x) = self.timers.iter_mut().find(|x| x.id == id) {
            *x = t;
            return Ok(());
        }
        self.timers.push(t).map_err(|_| ActionError::QueueFull)
    }

    /// Disarm timer `id`. Returns whether it was armed.
    pub fn cancel_timer(&mut self, id: u32) -> bool {
        match self.timers.iter().position(|x| x.id == id) {
            Some(i) => {
                self.timers.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn recompute(&mut self) {
        for h in 0..3 {
            let mut needed = 0u64;
            for i in (0..self.udes.len()).rev() {
                let bit = 1u64 << (Event::FIRST_UDE_BIT as usize + i);
                let child_needed = self.udes.iter().enumerate().any(|(j, u)| {
                    u.parent.0 == bit && needed & (1 << (Event::FIRST_UDE_BIT as usize + j)) != 0
                });
                if self.subs[h] & bit != 0 || child_needed {
                    needed |= bit;
                }
            }
            self.needed[h] = needed;
            let mut interest = self.subs[h];
            for (i, u) in self.udes.iter().enumerate() {
                let bit = 1u64 << (Event::FIRST_UDE_BIT as usize + i);
                if needed & bit != 0 {
                    // A floating event is raised by hand, never derived from its parent.
                    interest |= if u.floating { bit } else { u.parent.0 };
                }
            }
            self.interest[h] = interest;
        }
        self.any_interest = self.interest[0] | self.interest[1] | self.interest[2];
    }
}
