//! Which window slot a route writes to. The windows are process-wide (in
//! [`Status`](crate::Status), so a reload keeps a route's last 15 minutes); a snapshot only
//! holds each route's slot number, resolved when it is built, so the request path indexes an
//! array and never looks a name up.
//!
//! A route keeps its slot across reloads as long as its name stays; a new name takes the
//! lowest slot no route of the previous or the new configuration holds. A slot that passes to
//! another name is emptied when the new snapshot goes live (`Status::adopt`). At most
//! [`MAX_ROUTES`] routes are tracked; any beyond get [`Slot::UNTRACKED`] and show no figures.

/// Routes with windows of their own.
pub const MAX_ROUTES: usize = 64;

/// A window slot: 0 holds the requests that matched no route, 1..=MAX_ROUTES the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(pub(crate) u16);

impl Slot {
    /// Requests refused before a route matched (the intake, `no_route`, bad hosts).
    pub const UNROUTED: Slot = Slot(0);
    /// A route beyond [`MAX_ROUTES`]: counted nowhere.
    pub const UNTRACKED: Slot = Slot(u16::MAX);

    pub(crate) fn index(self) -> Option<usize> {
        let i = usize::from(self.0);
        (i <= MAX_ROUTES).then_some(i)
    }

    /// Whether the slot has windows (every slot but [`Slot::UNTRACKED`]).
    pub fn tracked(self) -> bool {
        self.index().is_some()
    }
}

/// Slots for `names` (in order), keeping those `previous` gave to the same names.
pub fn assign<'a>(
    names: impl IntoIterator<Item = &'a str>,
    previous: &[(&str, Slot)],
) -> Vec<Slot> {
    let names: Vec<&str> = names.into_iter().collect();
    let kept = |name: &str| {
        previous
            .iter()
            .find(|(n, s)| *n == name && *s != Slot::UNTRACKED)
            .map(|(_, s)| *s)
    };
    let mut taken = [false; MAX_ROUTES + 1];
    taken[0] = true;
    for (_, slot) in previous {
        if let Some(i) = slot.index() {
            taken[i] = true;
        }
    }
    names
        .iter()
        .map(|name| match kept(name) {
            Some(slot) => slot,
            None => match taken.iter().position(|t| !t) {
                Some(i) => {
                    taken[i] = true;
                    Slot(i as u16)
                }
                None => Slot::UNTRACKED,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_slot_and_new_names_take_free_ones() {
        let first = assign(["a", "b", "c"], &[]);
        assert_eq!(first, [Slot(1), Slot(2), Slot(3)]);
        let previous = [("a", Slot(1)), ("b", Slot(2)), ("c", Slot(3))];
        // `b` goes, `d` comes: `d` must not inherit `b`'s figures while the old snapshot lives.
        let second = assign(["c", "a", "d"], &previous);
        assert_eq!(second, [Slot(3), Slot(1), Slot(4)]);
        let previous = [("c", Slot(3)), ("a", Slot(1)), ("d", Slot(4))];
        assert_eq!(assign(["e"], &previous), [Slot(2)]);
    }

    #[test]
    fn routes_beyond_the_bound_are_untracked() {
        let names: Vec<String> = (0..MAX_ROUTES + 2).map(|i| format!("r{i}")).collect();
        let slots = assign(names.iter().map(String::as_str), &[]);
        assert_eq!(slots[MAX_ROUTES - 1], Slot(MAX_ROUTES as u16));
        assert_eq!(slots[MAX_ROUTES], Slot::UNTRACKED);
        assert_eq!(Slot::UNTRACKED.index(), None);
    }
}
