//! Bearer-token checks.

/// Compares a presented token with the configured one in time that does not depend on where they
/// differ, so the token cannot be guessed byte by byte from response times.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for (i, y) in b.iter().enumerate() {
        let x = a.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0 && a.len() == b.len()
}

/// The token from an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Slows down token guessing: an address with too many failed authentications within a minute
/// is refused outright until the minute has passed.
pub struct AuthThrottle {
    failures:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

/// Failures allowed per address per window before it is refused.
pub const MAX_AUTH_FAILURES: u32 = 10;
const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            failures: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl AuthThrottle {
    pub fn record_failure(&self, ip: std::net::IpAddr) {
        let now = std::time::Instant::now();
        let mut f = crate::sync::lock(&self.failures);
        if f.len() > 10_000 {
            f.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        }
        let e = f.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
        crate::metrics::METRICS.auth_failures.inc();
    }

    pub fn is_blocked(&self, ip: std::net::IpAddr) -> bool {
        let f = crate::sync::lock(&self.failures);
        f.get(&ip)
            .is_some_and(|(n, since)| *n >= MAX_AUTH_FAILURES && since.elapsed() < WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_token() {
        assert!(token_matches("secret-token", "secret-token"));
        assert!(!token_matches("secret-tokem", "secret-token"));
        assert!(!token_matches("secret", "secret-token"));
        assert!(!token_matches("secret-token-and-more", "secret-token"));
        assert!(!token_matches("", "secret-token"));
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
