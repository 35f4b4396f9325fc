//! Who is in which room in the many-rooms scenario, the same for every target.
//!
//! `rooms` rooms of `members` members are spread over `clients` clients. Rooms are dealt in
//! rounds: a round is `clients / members` rooms that together hold every client once, so each
//! client ends up in about `rooms × members / clients` rooms (exactly that when the numbers
//! divide). Round `g` seats the clients in the order of a different permutation
//! (`position × a_g mod clients`, with `a_g` the `g`-th number coprime to `clients`), so no
//! two rooms of different rounds have the same members and a client's rooms share only a
//! few people — closer to real rooms than ten copies of the same ten-person groups.

/// The room layout: how many rooms, members per room, clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLayout {
    /// Rooms.
    pub rooms: usize,
    /// Members per room (at most `clients`).
    pub members: usize,
    /// Connected clients.
    pub clients: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl RoomLayout {
    /// A layout, or why it cannot be one.
    pub fn new(rooms: usize, members: usize, clients: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(rooms > 0, "at least one room");
        anyhow::ensure!(members >= 2, "a room needs at least two members");
        anyhow::ensure!(
            members <= clients,
            "{members} members per room need at least as many clients (got {clients})"
        );
        Ok(Self {
            rooms,
            members,
            clients,
        })
    }

    /// Rooms per round (each round seats every client at most once).
    fn per_round(self) -> usize {
        self.clients / self.members
    }

    /// The `g`-th number coprime to `clients`: round `g`'s seating multiplier.
    fn multiplier(self, g: usize) -> usize {
        // Stops after a few steps for the first rounds; wraps after φ(clients) rounds.
        (1..=self.clients)
            .cycle()
            .filter(|&a| gcd(a, self.clients) == 1)
            .nth(g)
            .unwrap_or(1)
    }

    /// Client index of member `k` (0-based, `< members`) of room `r`. Member 0 is the room's
    /// owner where a target has one (LiveWire creates the room from that client).
    pub fn member(self, r: usize, k: usize) -> usize {
        let g = r / self.per_round();
        let pos = (r % self.per_round()) * self.members + k;
        pos * self.multiplier(g) % self.clients
    }

    /// The members of room `r`, owner first.
    pub fn members_of(self, r: usize) -> Vec<usize> {
        let a = self.multiplier(r / self.per_round());
        let first = (r % self.per_round()) * self.members;
        (first..first + self.members)
            .map(|pos| pos * a % self.clients)
            .collect()
    }

    /// Every room's members, indexed by room (one pass, for setting a fleet up).
    pub fn table(self) -> Vec<Vec<usize>> {
        (0..self.rooms).map(|r| self.members_of(r)).collect()
    }

    /// The rooms of each client, indexed by client.
    pub fn rooms_by_client(self) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.clients];
        for (r, members) in self.table().into_iter().enumerate() {
            for c in members {
                by[c].push(r);
            }
        }
        by
    }

    /// Room `r`'s name on LiveWire and IRC.
    pub fn channel(r: usize) -> String {
        format!("#room-{r}")
    }

    /// Room `r`'s MQTT topic.
    pub fn topic(r: usize) -> String {
        format!("room/{r}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn default_layout_puts_every_client_in_ten_distinct_rooms() {
        let l = RoomLayout::new(1000, 10, 1000).unwrap();
        let table = l.table();
        let sets: BTreeSet<BTreeSet<usize>> =
            table.iter().map(|m| m.iter().copied().collect()).collect();
        assert_eq!(sets.len(), 1000, "no two rooms have the same members");
        assert!(sets.iter().all(|s| s.len() == 10), "members are distinct");
        let by = l.rooms_by_client();
        assert!(by.iter().all(|r| r.len() == 10));
        for r in [0, 1, 99, 100, 517, 999] {
            for (k, &c) in table[r].iter().enumerate() {
                assert_eq!(l.member(r, k), c);
            }
        }
    }

    #[test]
    fn uneven_numbers_still_give_distinct_members() {
        let l = RoomLayout::new(50, 5, 37).unwrap();
        for m in l.table() {
            let s: BTreeSet<usize> = m.iter().copied().collect();
            assert_eq!(s.len(), 5);
            assert!(m.iter().all(|&c| c < 37));
        }
        assert!(RoomLayout::new(10, 5, 4).is_err());
    }
}
