//! Connection slots: how many connections the server holds at once, and for whom (NA-14).
//!
//! Two pools that never borrow from each other:
//!
//! * **Unauthenticated**: every connection from accept until its TLS handshake proves a
//!   device certificate, and every `sealsync-enroll` connection for its whole life. At most
//!   [`Limits::unauthenticated`] in all and [`Limits::unauthenticated_per_addr`] per source
//!   address (an IPv4 address, or an IPv6 /64). A new connection is never turned away: when
//!   its address is at its cap, that address's oldest unauthenticated connection is evicted;
//!   when the pool is full, the oldest connection of the network holding the most is (an
//!   IPv4 address, or an IPv6 /48: the usual allocation of one site, so an attacker with a
//!   routed /48 spreading one connection over each of its /64s counts as one network). So a
//!   flood from one address or /48 only ever displaces itself, and a flood from many
//!   networks displaces the longest-waiting connections first, while each newcomer gets its
//!   chance to complete a handshake.
//! * **Devices**: connections whose handshake verified a device certificate. At most
//!   [`Limits::devices`] in all, so the unauthenticated traffic can never take them, and at
//!   most [`Limits::per_device`] per device id: a device's newest connection evicts its own
//!   oldest (gently: in-flight requests finish). A device connection beyond the pool is
//!   refused.
//!
//! A [`Slot`] is held by the connection's task and frees itself when dropped; an evicted
//! connection learns it through its [`Eviction`] receiver.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use sealsync_core::DeviceId;
use tokio::sync::oneshot;

/// The caps of both pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Unauthenticated connections in all (handshakes in progress, enrollment connections).
    pub(crate) unauthenticated: usize,
    /// Unauthenticated connections per source address (IPv4 address or IPv6 /64).
    pub(crate) unauthenticated_per_addr: usize,
    /// Authenticated device connections in all.
    pub(crate) devices: usize,
    /// Connections per device id.
    pub(crate) per_device: usize,
}

impl Limits {
    /// The defaults when file descriptors are plentiful.
    pub(crate) const DEFAULT: Limits = Limits {
        unauthenticated: 256,
        unauthenticated_per_addr: 8,
        devices: 1024,
        per_device: 8,
    };

    /// File descriptors kept free for the listener, the database, logs and the like.
    const RESERVED_FDS: u64 = 128;

    /// The defaults, shrunk to fit `max_fds` open files (both pools keep at least a few
    /// slots; the unauthenticated pool takes at most a fifth).
    pub(crate) fn for_fd_limit(max_fds: u64) -> Limits {
        let budget =
            usize::try_from(max_fds.saturating_sub(Self::RESERVED_FDS)).unwrap_or(usize::MAX);
        let d = Self::DEFAULT;
        let unauthenticated = d.unauthenticated.min(budget / 5).max(16);
        let devices = d
            .devices
            .min(budget.saturating_sub(unauthenticated))
            .max(16);
        Limits {
            unauthenticated,
            unauthenticated_per_addr: d.unauthenticated_per_addr.min(unauthenticated),
            devices,
            per_device: d.per_device,
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit (as many servers do at
/// start) and returns the limit now in force (`u64::MAX` for unlimited).
pub(crate) fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum.unwrap_or(u64::MAX);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// The address a per-address cap counts by: IPv4 addresses (also IPv4-mapped IPv6) whole,
/// IPv6 by /64, since one host usually owns a whole /64 (BI-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AddrKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl AddrKey {
    /// The network the pool-full eviction counts by: IPv4 addresses whole, IPv6 by /48.
    fn network(self) -> AddrKey {
        match self {
            AddrKey::V4(_) => self,
            AddrKey::V6(p) => AddrKey::V6([p[0], p[1], p[2], p[3], p[4], p[5], 0, 0]),
        }
    }

    /// The key of `ip`.
    pub(crate) fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&o[..8]);
                    AddrKey::V6(prefix)
                }
            },
        }
    }
}

/// Resolves when the connection holding the matching [`Slot`] has been evicted (or the
/// slot table is gone).
pub(crate) type Eviction = oneshot::Receiver<()>;

/// Why a device connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The device pool is full.
    DevicesFull,
    /// The connection was evicted from the unauthenticated pool before it could move.
    Evicted,
}

/// What [`Slots::admit`] had to do to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MadeRoom {
    /// There was a free slot.
    Free,
    /// The new connection's address was at its cap: its oldest connection was evicted.
    SameAddress,
    /// The pool was full: the oldest connection of the busiest address was evicted.
    PoolFull,
}

/// Which pool a slot is in.
#[derive(Debug, Clone, Copy)]
enum Class {
    Unauthenticated,
    Device(DeviceId),
}

/// The slot tables of one server.
#[derive(Debug)]
pub(crate) struct Slots {
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Unauthenticated connections by id (ids grow, so the first is the oldest).
    unauth: BTreeMap<u64, (AddrKey, oneshot::Sender<()>)>,
    /// The ids of `unauth` per address.
    by_addr: HashMap<AddrKey, BTreeSet<u64>>,
    /// The ids of `unauth` per network ([`AddrKey::network`]).
    by_network: HashMap<AddrKey, BTreeSet<u64>>,
    /// Device connections by device, then id.
    devices: HashMap<DeviceId, BTreeMap<u64, oneshot::Sender<()>>>,
    /// Number of entries across `devices`.
    device_count: usize,
}

impl Inner {
    fn remove_unauth(&mut self, id: u64) -> Option<oneshot::Sender<()>> {
        let (addr, tx) = self.unauth.remove(&id)?;
        for (map, key) in [
            (&mut self.by_addr, addr),
            (&mut self.by_network, addr.network()),
        ] {
            if let Some(ids) = map.get_mut(&key) {
                ids.remove(&id);
                if ids.is_empty() {
                    map.remove(&key);
                }
            }
        }
        Some(tx)
    }

    fn remove_device(&mut self, device: DeviceId, id: u64) -> Option<oneshot::Sender<()>> {
        let conns = self.devices.get_mut(&device)?;
        let tx = conns.remove(&id)?;
        if conns.is_empty() {
            self.devices.remove(&device);
        }
        self.device_count -= 1;
        Some(tx)
    }

    /// Evicts the unauthenticated connection `id` (its task is told).
    fn evict_unauth(&mut self, id: u64) {
        if let Some(tx) = self.remove_unauth(id) {
            // An error means the connection is already gone: nothing to tell.
            let _ = tx.send(());
        }
    }
}

impl Slots {
    /// Empty tables with `limits`.
    pub(crate) fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (no operation panics
        // half-way), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a new unauthenticated connection from `ip`, evicting another one first if a
    /// cap is reached (never the new one).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> (Slot, Eviction, MadeRoom) {
        let addr = AddrKey::of(ip);
        let mut inner = self.lock();
        let same_addr = inner.by_addr.get(&addr).map_or(0, BTreeSet::len);
        let made_room = if same_addr >= self.limits.unauthenticated_per_addr {
            if let Some(oldest) = inner.by_addr.get(&addr).and_then(|s| s.first().copied()) {
                inner.evict_unauth(oldest);
            }
            MadeRoom::SameAddress
        } else if inner.unauth.len() >= self.limits.unauthenticated {
            let busiest = inner
                .by_network
                .values()
                .filter_map(|ids| ids.first().map(|first| (ids.len(), *first)))
                // Most connections first; among equals, the oldest.
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, oldest)| oldest);
            if let Some(oldest) = busiest {
                inner.evict_unauth(oldest);
            }
            MadeRoom::PoolFull
        } else {
            MadeRoom::Free
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let (tx, rx) = oneshot::channel();
        inner.unauth.insert(id, (addr, tx));
        inner.by_addr.entry(addr).or_default().insert(id);
        inner
            .by_network
            .entry(addr.network())
            .or_default()
            .insert(id);
        drop(inner);
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            class: Class::Unauthenticated,
        };
        (slot, rx, made_room)
    }

    /// Unauthenticated connections held now.
    #[cfg(test)]
    fn unauthenticated(&self) -> usize {
        self.lock().unauth.len()
    }

    /// Device connections held now.
    #[cfg(test)]
    fn device_connections(&self) -> usize {
        self.lock().device_count
    }
}

/// One connection's place in a pool; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    class: Class,
}

impl Slot {
    /// Moves an unauthenticated connection whose handshake verified `device`'s certificate
    /// into the device pool. At the per-device cap, that device's oldest connection is
    /// evicted; when the pool is full, the connection is refused (and its slot freed).
    pub(crate) fn promote(mut self, device: DeviceId) -> Result<(Slot, Eviction), Refused> {
        let Class::Unauthenticated = self.class else {
            return Err(Refused::Evicted);
        };
        let slots = Arc::clone(&self.slots);
        let mut inner = slots.lock();
        if inner.remove_unauth(self.id).is_none() {
            return Err(Refused::Evicted);
        }
        // From here on the slot is out of the unauthenticated pool: mark it so that dropping
        // it on the refusal path frees nothing twice.
        self.class = Class::Device(device);
        let own = inner.devices.get(&device).map_or(0, BTreeMap::len);
        if own >= slots.limits.per_device {
            let oldest = inner
                .devices
                .get(&device)
                .and_then(|c| c.first_key_value().map(|(id, _)| *id));
            if let Some(tx) = oldest.and_then(|id| inner.remove_device(device, id)) {
                // An error means that connection is already gone.
                let _ = tx.send(());
            }
        } else if inner.device_count >= slots.limits.devices {
            // Not in the device map: the drop below removes nothing.
            return Err(Refused::DevicesFull);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let (tx, rx) = oneshot::channel();
        inner.devices.entry(device).or_default().insert(id, tx);
        inner.device_count += 1;
        drop(inner);
        let slot = Slot {
            slots,
            id,
            class: Class::Device(device),
        };
        Ok((slot, rx))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        match self.class {
            Class::Unauthenticated => {
                inner.remove_unauth(self.id);
            }
            Class::Device(device) => {
                inner.remove_device(device, self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use super::*;

    const SMALL: Limits = Limits {
        unauthenticated: 4,
        unauthenticated_per_addr: 2,
        devices: 3,
        per_device: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn evicted(rx: &mut Eviction) -> bool {
        matches!(rx.try_recv(), Ok(()))
    }

    #[test]
    fn one_address_only_displaces_itself() {
        // NA-14: a flood from one address evicts its own oldest connection, never others.
        let slots = Slots::new(SMALL);
        let (_other, mut other_rx, _) = slots.admit(ip("10.0.0.9"));
        let mut flood = Vec::new();
        for _ in 0..10 {
            flood.push(slots.admit(ip("10.0.0.1")));
        }
        assert!(!evicted(&mut other_rx), "another address was evicted");
        assert_eq!(flood.last().unwrap().2, MadeRoom::SameAddress);
        let alive = flood.iter_mut().filter(|(_, rx, _)| rx.is_empty()).count();
        assert_eq!(alive, 2, "the address holds more than its cap");
        // The two newest are the ones left.
        assert!(!evicted(&mut flood[9].1));
        assert!(!evicted(&mut flood[8].1));
        assert!(evicted(&mut flood[0].1));
        assert_eq!(slots.unauthenticated(), 3);
    }

    #[test]
    fn a_full_pool_evicts_the_busiest_addresses_oldest_and_admits_the_newcomer() {
        // NA-14: with the pool full of many addresses, a newcomer still gets a slot.
        let slots = Slots::new(SMALL);
        let (_a1, mut a1, _) = slots.admit(ip("10.0.0.1"));
        let (_b1, mut b1, _) = slots.admit(ip("10.0.0.2"));
        let (_b2, mut b2, _) = slots.admit(ip("10.0.0.2"));
        let (_c1, mut c1, _) = slots.admit(ip("10.0.0.3"));
        let (_d1, mut d1, made) = slots.admit(ip("10.0.0.4"));
        assert_eq!(made, MadeRoom::PoolFull);
        assert!(
            evicted(&mut b1),
            "the busiest address's oldest was not evicted"
        );
        for rx in [&mut a1, &mut b2, &mut c1, &mut d1] {
            assert!(!evicted(rx));
        }
        assert_eq!(slots.unauthenticated(), 4);
    }

    #[test]
    fn a_flood_over_many_64s_of_one_48_only_displaces_itself() {
        // NA-14: an attacker with a routed /48 holds one connection on each of many /64s,
        // under every per-address cap, and keeps opening more. The pool counts its /48 as
        // one network: the churn evicts its own connections, never an honest handshake
        // that started before the flood.
        let slots = Slots::new(SMALL);
        let (_honest, mut honest, _) = slots.admit(ip("10.9.9.9"));
        let (_v6, mut v6, _) = slots.admit(ip("2001:db8:ffff:1::1"));
        let mut flood = Vec::new();
        for i in 0..50u32 {
            flood.push(slots.admit(ip(&format!("2001:db8:1:{i:x}::1"))));
        }
        assert!(!evicted(&mut honest), "an IPv4 handshake was evicted");
        assert!(!evicted(&mut v6), "another /48's handshake was evicted");
        assert_eq!(flood.last().unwrap().2, MadeRoom::PoolFull);
        assert_eq!(slots.unauthenticated(), SMALL.unauthenticated);
    }

    #[test]
    fn dropped_slots_free_their_place() {
        let slots = Slots::new(SMALL);
        let held: Vec<_> = (0..4)
            .map(|i| slots.admit(ip(&format!("10.0.1.{i}"))))
            .collect();
        assert_eq!(slots.unauthenticated(), 4);
        drop(held);
        assert_eq!(slots.unauthenticated(), 0);
        let (_s, _, made) = slots.admit(ip("10.0.1.9"));
        assert_eq!(made, MadeRoom::Free);
    }

    #[test]
    fn device_pool_is_separate_capped_per_device_and_refuses_beyond() {
        // NA-14: authenticated connections leave the unauthenticated pool; a device's newest
        // connection displaces its own oldest; a full device pool refuses.
        let slots = Slots::new(SMALL);
        let dev = |b: u8| DeviceId([b; 16]);
        let (s, _, _) = slots.admit(ip("10.0.2.1"));
        let (_d1, mut d1_rx) = s.promote(dev(1)).unwrap();
        assert_eq!(slots.unauthenticated(), 0);
        let (s, _, _) = slots.admit(ip("10.0.2.1"));
        let (_d1b, mut d1b_rx) = s.promote(dev(1)).unwrap();
        let (s, _, _) = slots.admit(ip("10.0.2.1"));
        let (_d1c, _) = s.promote(dev(1)).unwrap();
        assert!(evicted(&mut d1_rx), "the device's oldest connection stayed");
        assert!(!evicted(&mut d1b_rx));
        assert_eq!(slots.device_connections(), 2);
        let (s, _, _) = slots.admit(ip("10.0.2.2"));
        let (_d2, _) = s.promote(dev(2)).unwrap();
        let (s, _, _) = slots.admit(ip("10.0.2.3"));
        assert_eq!(s.promote(dev(3)).unwrap_err(), Refused::DevicesFull);
        assert_eq!(slots.device_connections(), 3);
        assert_eq!(slots.unauthenticated(), 0);
        // The unauthenticated pool is still whole.
        let held: Vec<_> = (0..4)
            .map(|i| slots.admit(ip(&format!("10.0.3.{i}"))))
            .collect();
        assert!(held.iter().all(|(_, _, m)| *m == MadeRoom::Free));
    }

    #[test]
    fn an_evicted_handshake_cannot_move_to_the_device_pool() {
        let slots = Slots::new(SMALL);
        let (first, mut rx, _) = slots.admit(ip("10.0.4.1"));
        let _second = slots.admit(ip("10.0.4.1"));
        let _third = slots.admit(ip("10.0.4.1"));
        assert!(evicted(&mut rx));
        assert_eq!(
            first.promote(DeviceId([4; 16])).unwrap_err(),
            Refused::Evicted
        );
        assert_eq!(slots.device_connections(), 0);
    }

    #[test]
    fn ipv6_counts_by_64_and_by_48_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::1")).network(),
            AddrKey::of(ip("2001:db8:1:ffff::1")).network()
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")).network(),
            AddrKey::of(ip("2001:db8:2:2::1")).network()
        );
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddrKey::of(ip("::ffff:10.0.0.1")),
            AddrKey::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn limits_shrink_to_the_file_descriptor_limit() {
        assert_eq!(Limits::for_fd_limit(1 << 20), Limits::DEFAULT);
        let l = Limits::for_fd_limit(1024);
        assert!(l.unauthenticated + l.devices + 128 <= 1024, "{l:?}");
        assert!(l.unauthenticated >= 16 && l.devices >= 16);
        let tiny = Limits::for_fd_limit(64);
        assert_eq!((tiny.unauthenticated, tiny.devices), (16, 16));
    }
}
