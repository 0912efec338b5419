//! Limits on who may connect and how fast they may talk: the connection caps (total and per
//! client address), the per-connection message rate, and the client address itself (taken
//! from `X-Forwarded-For` only when the peer is a trusted proxy, so the header cannot be used to
//! dodge the per-address cap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Counts open connections, in total and per address. The engine keeps two: one for every
/// connection, and a much smaller one for connections that have not authenticated yet, so that
/// clients without the token can never take the places of those with it.
pub struct ConnectionLimiter {
    /// Counts connections waiting to authenticate (its refusals say so).
    unauthenticated: bool,
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections,
    TooManyFromAddress,
    TooManyUnauthenticated,
    TooManyUnauthenticatedFromAddress,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "connection limit reached, try again later",
            Refusal::TooManyFromAddress => {
                "too many connections from this address, try again later"
            }
            Refusal::TooManyUnauthenticated => {
                "too many connections waiting to authenticate, try again later"
            }
            Refusal::TooManyUnauthenticatedFromAddress => {
                "too many connections from this address waiting to authenticate, try again later"
            }
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "limit",
            Refusal::TooManyFromAddress => "per_address_limit",
            Refusal::TooManyUnauthenticated => "unauthenticated_limit",
            Refusal::TooManyUnauthenticatedFromAddress => "unauthenticated_per_address_limit",
        }
    }
}

/// One open connection's place under the limits; released when dropped.
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Self::build(false, max_total, max_per_ip)
    }

    /// The limiter for connections that have not authenticated yet.
    pub fn unauthenticated(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Self::build(true, max_total, max_per_ip)
    }

    fn build(unauthenticated: bool, max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            unauthenticated,
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    pub fn current(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let mut per_ip = crate::sync::lock(&self.per_ip);
        let (all, one) = match self.unauthenticated {
            false => (Refusal::TooManyConnections, Refusal::TooManyFromAddress),
            true => (
                Refusal::TooManyUnauthenticated,
                Refusal::TooManyUnauthenticatedFromAddress,
            ),
        };
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(all);
        }
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(one);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = crate::sync::lock(&self.limiter.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.limiter.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A token bucket: `rate` messages per second, bursts of twice that.
pub struct RateLimiter {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `rate == 0` means unlimited.
    pub fn new(rate: u32) -> Self {
        let rate = rate as f64;
        RateLimiter {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    /// Takes one token; `false` when the client is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's address: the peer, or, only when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` (all its headers, in order, as one list) that is not itself a
/// trusted proxy. Everything left of that address was written by the client and proves nothing;
/// a hop that is not an address ends the search at the peer.
pub fn client_addr(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops = forwarded_for.iter().rev().flat_map(|h| h.rsplit(','));
    for hop in hops {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_total_and_per_address_and_releases_on_drop() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Refusal::TooManyFromAddress));
        let u = ConnectionLimiter::unauthenticated(2, 1);
        let _u1 = u.try_acquire(a).unwrap();
        assert_eq!(
            u.try_acquire(a).err(),
            Some(Refusal::TooManyUnauthenticatedFromAddress)
        );
        let _p3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Refusal::TooManyConnections));
        drop(p1);
        assert!(l.try_acquire(a).is_ok());
    }

    #[test]
    fn rate_limiter_allows_bursts_then_refills() {
        let mut r = RateLimiter::new(10);
        let t = Instant::now();
        assert_eq!((0..25).filter(|_| r.allow(t)).count(), 20);
        assert!(r.allow(t + Duration::from_millis(150)));
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let trusted = [proxy];
        assert_eq!(client_addr(other, &["1.2.3.4"], &trusted), other);
        assert_eq!(
            client_addr(proxy, &["1.2.3.4"], &trusted).to_string(),
            "1.2.3.4"
        );
        assert_eq!(
            client_addr(proxy, &["9.9.9.9, 1.2.3.4, 127.0.0.1"], &trusted).to_string(),
            "1.2.3.4"
        );
        // A second header counts as the list's continuation: its last hop is the right-most.
        assert_eq!(
            client_addr(proxy, &["1.2.3.4", "5.6.7.8, 127.0.0.1"], &trusted).to_string(),
            "5.6.7.8"
        );
        assert_eq!(client_addr(proxy, &["junk"], &trusted), proxy);
        assert_eq!(client_addr(proxy, &[], &trusted), proxy);
    }
}
