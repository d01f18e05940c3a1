//! Readers and speed per site, counted where content is served
//! (`http::content`) and handed to the leader with the probe's reports
//! (`probe`); the records are `sen_raft::schema::system::traffic`.
//!
//! A reader is the client address (or, behind a trusted proxy, the address
//! it names in `X-Forwarded-For`) hashed with a key derived from the
//! cluster's secret and the day: every node counts the same reader alike
//! on one day, nobody can link readers across days, and no address is
//! kept.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sen_raft::schema::system::{Readers, ReadersRecord, TrafficRecord};

/// Records one report carries at most of each kind (the rest go later).
pub const MAX_PER_REPORT: usize = 200;

/// Days kept in memory (today and yesterday, for answers around midnight
/// and reports that could not be sent).
const DAYS_KEPT: usize = 3;

#[derive(Debug, Default)]
struct Day {
    key: [u8; 32],
    sites: BTreeMap<String, Site>,
    /// The last reader hashed and its hash (a reader's requests come in
    /// runs: a page and its images).
    last: Option<(IpAddr, u64)>,
}

#[derive(Debug)]
struct Site {
    traffic: TrafficRecord,
    readers: Readers,
    dirty: bool,
}

/// This node's counts, per day and site, until the leader has them.
#[derive(Debug, Default)]
pub struct Tally {
    days: Mutex<BTreeMap<String, Day>>,
    /// `content.trusted-proxies`, parsed once.
    trusted: Vec<ipnet::IpNet>,
}

/// What a node hands in: its traffic records and its readers sketches.
pub type Pending = (Vec<TrafficRecord>, Vec<ReadersRecord>);

/// The key of `day` from the cluster's `secret`.
pub fn day_key(secret: &[u8], day: &str) -> [u8; 32] {
    let mut material = secret.to_vec();
    material.extend_from_slice(day.as_bytes());
    blake3::derive_key("sen 2026-12 readers per day v1", &material)
}

/// The reader behind an address, on the day of `key`.
pub fn reader_hash(key: &[u8; 32], ip: IpAddr) -> u64 {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let h = blake3::keyed_hash(key, ip.to_string().as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or_default())
}

/// The client a request comes from: the peer, or — when the peer is a
/// trusted proxy — the last address in `X-Forwarded-For` that is not
/// itself a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(list) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A hop we cannot read: stop at what we know.
            Err(_) => break,
        }
    }
    client
}

impl Tally {
    /// Counts that believe `X-Forwarded-For` from `trusted_proxies`
    /// (addresses or networks; entries that do not parse, which the
    /// configuration check refuses, are left out).
    pub fn new(trusted_proxies: &[String]) -> Self {
        let trusted = trusted_proxies
            .iter()
            .filter_map(|p| {
                p.parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| p.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
            })
            .collect();
        Self {
            days: Mutex::default(),
            trusted,
        }
    }

    /// The reader of a request from `peer` ([`client_ip`] with the trusted
    /// proxies).
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        client_ip(peer, forwarded_for, &self.trusted)
    }

    /// Count one answer of `site` on `day` at `hour`. `key` gives the
    /// day's key the first time the day is seen; `stored` this node's
    /// record of the day as kept in the cluster (to continue from it after
    /// a restart).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        day: &str,
        hour: u8,
        site: &str,
        node: u64,
        status: u16,
        bytes: u64,
        latency_ms: u64,
        ip: IpAddr,
        key: impl FnOnce() -> [u8; 32],
        stored: impl FnOnce() -> Option<TrafficRecord>,
    ) {
        let mut days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        if !days.contains_key(day) {
            days.insert(
                day.to_owned(),
                Day {
                    key: key(),
                    sites: BTreeMap::new(),
                    last: None,
                },
            );
            while days.len() > DAYS_KEPT {
                days.pop_first();
            }
        }
        let Some(d) = days.get_mut(day) else { return };
        let hash = match d.last {
            Some((last, h)) if last == ip => h,
            _ => {
                let h = reader_hash(&d.key, ip);
                d.last = Some((ip, h));
                h
            }
        };
        if !d.sites.contains_key(site) {
            d.sites.insert(
                site.to_owned(),
                Site {
                    traffic: stored()
                        .filter(|r| r.day == day && r.site == site && r.node == node)
                        .unwrap_or_else(|| TrafficRecord::new(day, site, node)),
                    readers: Readers::default(),
                    dirty: false,
                },
            );
        }
        let Some(s) = d.sites.get_mut(site) else { return };
        s.traffic
            .hours
            .entry(hour)
            .or_default()
            .observe(status, bytes, latency_ms);
        s.readers.insert(hash);
        s.dirty = true;
    }

    /// What changed since the leader last took it (at most
    /// [`MAX_PER_REPORT`] sites).
    pub fn pending(&self) -> Pending {
        let days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        let mut traffic = Vec::new();
        let mut readers = Vec::new();
        for (day, d) in days.iter() {
            for (site, s) in &d.sites {
                if s.dirty && traffic.len() < MAX_PER_REPORT {
                    traffic.push(s.traffic.clone());
                    readers.push(ReadersRecord::new(day, site, &s.readers));
                }
            }
        }
        (traffic, readers)
    }

    /// The leader has `sent`: clear what did not change since.
    pub fn sent(&self, sent: &[TrafficRecord]) {
        let mut days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        for t in sent {
            if let Some(s) = days.get_mut(&t.day).and_then(|d| d.sites.get_mut(&t.site))
                && s.traffic == *t
            {
                s.dirty = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<ipnet::IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_tally_parses_its_trusted_proxies_once() {
        let t = Tally::new(&["10.0.0.0/8".into(), "192.0.2.7".into()]);
        let via = |peer: &str| t.client_ip(peer.parse().unwrap(), Some("198.51.100.7"));
        assert_eq!(via("10.1.2.3"), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(via("192.0.2.7"), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(via("192.0.2.8"), "192.0.2.8".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(stranger, Some("1.2.3.4"), &trusted),
            stranger,
            "a client cannot pick its address"
        );
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(
            client_ip(peer, Some("198.51.100.7, 10.0.0.9"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "the last hop not our own"
        );
        assert_eq!(
            client_ip(peer, Some("1.1.1.1, 198.51.100.7"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap(),
            "what the client wrote itself is not believed"
        );
        assert_eq!(client_ip(peer, Some("garbage"), &trusted), peer);
    }

    #[test]
    fn the_same_reader_hashes_alike_on_a_day_and_apart_across_days() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let (k1, k2) = (day_key(b"secret", "2026-12-03"), day_key(b"secret", "2026-12-04"));
        assert_eq!(reader_hash(&k1, ip), reader_hash(&k1, mapped));
        assert_ne!(reader_hash(&k1, ip), reader_hash(&k2, ip));
        assert_ne!(day_key(b"other", "2026-12-03"), k1);
    }

    #[test]
    fn counts_continue_from_the_stored_record_and_are_handed_in_once() {
        let t = Tally::default();
        let mut stored = TrafficRecord::new("2026-12-03", "portal", 1);
        stored.hours.entry(8).or_default().observe(200, 10, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..3 {
            t.observe(
                "2026-12-03",
                9,
                "portal",
                1,
                200,
                100,
                4,
                ip,
                || [7; 32],
                || Some(stored.clone()),
            );
            let _ = i;
        }
        let (traffic, readers) = t.pending();
        assert_eq!(traffic.len(), 1);
        assert_eq!(traffic[0].total().requests, 4, "1 before the restart, 3 after");
        assert_eq!(readers[0].readers().unwrap().estimate().round(), 1.0);
        t.sent(&traffic);
        assert!(t.pending().0.is_empty());
        t.observe("2026-12-03", 9, "portal", 1, 500, 0, 4, ip, || [7; 32], || None);
        assert_eq!(t.pending().0[0].total().s5xx, 1);
    }
}
