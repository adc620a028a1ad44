//! Who may connect: IP allow-lists (with the client address taken from `X-Forwarded-For` only
//! behind a trusted proxy), HTTP Basic credentials, signed per-call media tokens, the limit on
//! guessing the API key, and the counters of what was refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ipnet::IpNet;
use serde_json::{Value, json};

use crate::secrets::{Secrets, keys_match};

/// How long a media URL we hand out stays usable: a placed call may ring a while before its
/// stream connects.
pub const MEDIA_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Marks a token issued without a CallSid to bind to (a dynamic-URL request that sent none).
const ANY_CALL: &str = "-";

/// CIDRs (or single addresses), from a comma- or space-separated list.
#[derive(Debug, Clone, Default)]
pub struct IpList(Vec<IpNet>);

impl IpList {
    pub fn parse(name: &str, text: &str) -> anyhow::Result<Self> {
        let mut nets = Vec::new();
        for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => anyhow::bail!("{name}: {item:?} is not an IP address or CIDR (e.g. 203.0.113.0/24)"),
                },
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An allow-list: empty allows everyone.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.contains(ip)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4 (a dual-stack listener reports IPv4 peers that way).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address. A direct peer is believed; `X-Forwarded-For` only when the peer is a
/// trusted proxy, and then the nearest hop that is not itself a trusted proxy (what a client
/// writes at the far left of the header proves nothing).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &IpList) -> IpAddr {
    let peer = canonical(peer);
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    hops.iter().rev().copied().find(|ip| !trusted.contains(*ip)).or(hops.first().copied()).unwrap_or(peer)
}

/// `user:password` for HTTP Basic.
#[derive(Clone)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

impl BasicCredentials {
    pub fn parse(name: &str, text: &str) -> anyhow::Result<Self> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Ok(Self { user: user.to_string(), password: password.to_string() })
            }
            _ => anyhow::bail!("{name} must be user:password"),
        }
    }

    /// Constant-time check of the request's `Authorization: Basic`.
    pub fn check(&self, headers: &HeaderMap) -> bool {
        match basic_auth(headers) {
            Some((user, password)) => keys_match(&user, &self.user) & keys_match(&password, &self.password),
            None => false,
        }
    }
}

/// The user and password of an `Authorization: Basic` header.
pub fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(B64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The call a media token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCall {
    /// Exotel's CallSid (issued by the dynamic-URL endpoint).
    Sid(String),
    /// Our call id (the `StreamUrl` of a call we placed, before Exotel named it).
    Ours(String),
    /// A dynamic-URL request that sent no CallSid.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    Forged,
    Expired,
}

impl TokenError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed token",
            Self::Forged => "invalid token",
            Self::Expired => "expired token",
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `s<CallSid>.<expiry>.<mac>` or `c<call id>.<expiry>.<mac>`: the `t` parameter of a media URL.
pub fn media_token(secrets: &Secrets, call: &TokenCall, ttl: Duration) -> String {
    let subject = match call {
        TokenCall::Sid(s) => format!("s{s}"),
        TokenCall::Ours(id) => format!("c{id}"),
        TokenCall::Any => ANY_CALL.to_string(),
    };
    let body = format!("{subject}.{}", unix_now() + ttl.as_secs());
    let mac = secrets.sign_short("media", &body);
    format!("{body}.{mac}")
}

pub fn verify_media_token(secrets: &Secrets, token: &str) -> Result<TokenCall, TokenError> {
    let (body, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (subject, expiry) = body.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    if !secrets.verify_short("media", body, mac) {
        return Err(TokenError::Forged);
    }
    if unix_now() > expiry {
        return Err(TokenError::Expired);
    }
    Ok(match subject {
        ANY_CALL => TokenCall::Any,
        s if s.starts_with('s') => TokenCall::Sid(s[1..].to_string()),
        s if s.starts_with('c') => TokenCall::Ours(s[1..].to_string()),
        _ => return Err(TokenError::Malformed),
    })
}

/// Wrong keys one address may send (the API key by `Authorization: Bearer` or the console's
/// sign-in, and METRICS_TOKEN) within [`KEY_GUESS_WINDOW`] of its first; past it, that address's keys are not checked until
/// the window is over, right or wrong, so a guesser learns nothing from more tries.
pub const MAX_KEY_GUESSES: u32 = 10;
pub const KEY_GUESS_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Wrong keys from all the /64s of one IPv6 /48 (one site's block, which one party holds whole;
/// a tunnel broker hands /48s out free) before the whole block waits out the window: without it
/// one party could fill the table below with its /64s and stop everyone else.
pub const MAX_BLOCK_GUESSES: u32 = 10 * MAX_KEY_GUESSES;
/// Guessers tracked. Past it, windows that are over go, then guessers not stopped yet (counted
/// in `overflows`); a stopped one stays stopped, and while the table holds nothing else, keys
/// from addresses it doesn't hold are not checked either (a flood of addresses gets ten guesses
/// each, not more).
const MAX_GUESSERS: usize = 10_000;

/// Wrong keys by address (and IPv6 block).
#[derive(Debug, Default)]
pub struct KeyGuesses {
    table: Mutex<Guessers>,
    /// Addresses not stopped yet that were let go to make room.
    pub overflows: AtomicU64,
}

#[derive(Debug, Default)]
struct Guessers {
    /// When each guesser's window began, and its wrong keys in it.
    by_address: HashMap<Guesser, (Instant, u32)>,
    /// The table is full of stopped addresses until then (when the first of them is let go).
    full_until: Option<Instant>,
}

/// Who a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Guesser {
    V4(std::net::Ipv4Addr),
    /// An IPv6 address counts by its /64, what one host is usually given…
    V6Host(u64),
    /// …and by its /48 too (see [`MAX_BLOCK_GUESSES`]).
    V6Block(u64),
}

impl Guesser {
    /// The host, and for IPv6 the block it is in.
    fn of(ip: IpAddr) -> [Option<Self>; 2] {
        match canonical(ip) {
            IpAddr::V4(v4) => [Some(Self::V4(v4)), None],
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                [Some(Self::V6Host((bits >> 64) as u64)), Some(Self::V6Block((bits >> 80) as u64))]
            }
        }
    }

    fn limit(self) -> u32 {
        match self {
            Self::V6Block(_) => MAX_BLOCK_GUESSES,
            _ => MAX_KEY_GUESSES,
        }
    }
}

impl KeyGuesses {
    /// Whether a key from `ip` may be checked now; if not, how long until it may.
    pub fn may_try(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(mut table) = self.table.lock() else { return Ok(()) };
        let mine = Guesser::of(ip);
        for g in mine.iter().flatten() {
            if let Some(&(since, n)) = table.by_address.get(g) {
                let left = KEY_GUESS_WINDOW.saturating_sub(now.saturating_duration_since(since));
                if n >= g.limit() && !left.is_zero() {
                    return Err(left);
                }
            }
        }
        // Whoever can't be counted is not let guess.
        self.room(&mut table, now, &mine)
    }

    /// A wrong key came from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let Ok(mut table) = self.table.lock() else { return };
        let mine = Guesser::of(ip);
        let room = self.room(&mut table, now, &mine).is_ok();
        for g in mine.into_iter().flatten() {
            // Counts already held go on counting even when no new one fits.
            if !room && !table.by_address.contains_key(&g) {
                continue;
            }
            let (since, n) = table.by_address.entry(g).or_insert((now, 0));
            if now.saturating_duration_since(*since) >= KEY_GUESS_WINDOW {
                *since = now;
                *n = 0;
            }
            *n += 1;
        }
    }

    /// Room for the counts of `mine` not held yet (never made by letting go of one of them); if
    /// every count held is of a stopped guesser, how long until one is not.
    fn room(&self, table: &mut Guessers, now: Instant, mine: &[Option<Guesser>; 2]) -> Result<(), Duration> {
        let held = |t: &Guessers| mine.iter().flatten().filter(|g| t.by_address.contains_key(g)).count();
        let wanted = mine.iter().flatten().count();
        let fits = |t: &Guessers| t.by_address.len() + wanted - held(t) <= MAX_GUESSERS;
        if fits(table) {
            return Ok(());
        }
        if let Some(until) = table.full_until.filter(|until| now < *until) {
            return Err(until - now);
        }
        let open = |since: &Instant| now.saturating_duration_since(*since) < KEY_GUESS_WINDOW;
        table.by_address.retain(|_, (since, _)| open(since));
        if !fits(table) {
            let before = table.by_address.len();
            let ours = |g: &Guesser| mine.contains(&Some(*g));
            table.by_address.retain(|g, (_, n)| *n >= g.limit() || ours(g));
            self.overflows.fetch_add((before - table.by_address.len()) as u64, Ordering::Relaxed);
        }
        if fits(table) {
            table.full_until = None;
            return Ok(());
        }
        let first = table.by_address.values().map(|(since, _)| *since).min().unwrap_or(now);
        let until = first + KEY_GUESS_WINDOW;
        table.full_until = Some(until);
        Err(until.saturating_duration_since(now))
    }
}

/// Requests and sockets turned away, by reason (in `/health`).
#[derive(Debug, Default)]
pub struct Refusals {
    pub ip: AtomicU64,
    pub auth: AtomicU64,
    pub token: AtomicU64,
    pub token_call: AtomicU64,
    pub capacity: AtomicU64,
    pub conn_rate: AtomicU64,
    pub host: AtomicU64,
    /// Key checks refused to an address that sent too many wrong keys.
    pub key_guesses: AtomicU64,
}

impl Refusals {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "ip_not_allowed": n(&self.ip),
            "bad_credentials": n(&self.auth),
            "bad_token": n(&self.token),
            "token_for_another_call": n(&self.token_call),
            "over_max_calls": n(&self.capacity),
            "over_connection_rate": n(&self.conn_rate),
            "bad_host": n(&self.host),
            "too_many_wrong_keys": n(&self.key_guesses),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_wrong_keys_waits_out_the_window_and_the_table_is_bounded() {
        let guesses = KeyGuesses::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..MAX_KEY_GUESSES {
            assert_eq!(guesses.may_try(a, t0), Ok(()), "guess {i}");
            guesses.failed(a, t0 + Duration::from_secs(u64::from(i)));
        }
        let later = t0 + Duration::from_secs(60);
        assert_eq!(guesses.may_try(a, later), Err(KEY_GUESS_WINDOW - Duration::from_secs(60)));
        assert_eq!(guesses.may_try(b, later), Ok(()), "another address has its own count");
        assert_eq!(guesses.may_try(a, t0 + KEY_GUESS_WINDOW), Ok(()), "the window is over");
        guesses.failed(a, t0 + KEY_GUESS_WINDOW);
        assert_eq!(guesses.may_try(a, t0 + KEY_GUESS_WINDOW), Ok(()), "a new window, a new count");

        // One IPv6 host's /64 is one guesser.
        let (v6a, v6b): (IpAddr, IpAddr) =
            ("2001:db8:1:2::1".parse().unwrap(), "2001:db8:1:2:ffff::9".parse().unwrap());
        for _ in 0..MAX_KEY_GUESSES {
            guesses.failed(v6a, later);
        }
        assert!(guesses.may_try(v6b, later).is_err(), "another address of the same /64");
        assert_eq!(guesses.may_try("2001:db8:1:3::1".parse().unwrap(), later), Ok(()), "another /64");
    }

    #[test]
    fn an_ipv6_guesser_needs_room_for_both_its_counts_and_never_pushes_one_out_with_the_other() {
        let t0 = Instant::now();
        let stopped = |n: usize| {
            let guesses = KeyGuesses::default();
            for i in 0..n {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
                for _ in 0..MAX_KEY_GUESSES {
                    guesses.failed(ip, t0);
                }
            }
            guesses
        };
        let v6: IpAddr = "2001:db8:9::1".parse().unwrap();
        // Room for one count, not two: the newcomer waits (it would otherwise push its own /64's
        // count out to make room for its /48's, and guess for ever).
        let almost = stopped(MAX_GUESSERS - 1);
        assert!(almost.may_try(v6, t0).is_err());
        // Room for both: counted like anyone else.
        let roomy = stopped(MAX_GUESSERS - 2);
        let mut tries = 0;
        while roomy.may_try(v6, t0).is_ok() {
            roomy.failed(v6, t0);
            tries += 1;
            assert!(tries <= MAX_KEY_GUESSES, "no limit");
        }
        assert_eq!(tries, MAX_KEY_GUESSES);
    }

    #[test]
    fn one_ipv6_block_can_not_fill_the_table_with_its_64s() {
        let guesses = KeyGuesses::default();
        let t0 = Instant::now();
        // Ten wrong keys from each /64 of one /48, until the /48 as a whole is stopped.
        let in_block =
            |i: u128| IpAddr::from(std::net::Ipv6Addr::from((0x2001_0db8_0001_0000_u128 << 64) | (i << 64) | 1));
        let mut sent = 0;
        for i in 0..u128::from(MAX_BLOCK_GUESSES) {
            let ip = in_block(i);
            while guesses.may_try(ip, t0).is_ok() {
                guesses.failed(ip, t0);
                sent += 1;
            }
        }
        assert_eq!(sent, MAX_BLOCK_GUESSES, "the block's allowance, spread over its /64s");
        assert!(guesses.may_try(in_block(5000), t0).is_err(), "a fresh /64 of the block waits too");
        let held = guesses.table.lock().unwrap().by_address.len();
        assert!(held <= 1 + (MAX_BLOCK_GUESSES / MAX_KEY_GUESSES) as usize, "{held} entries");
        assert_eq!(guesses.may_try("2001:db8:2::1".parse().unwrap(), t0), Ok(()), "another /48");
        assert_eq!(guesses.may_try("192.0.2.1".parse().unwrap(), t0), Ok(()));
        assert_eq!(guesses.may_try(in_block(5000), t0 + KEY_GUESS_WINDOW), Ok(()), "the window is over");
    }

    #[test]
    fn a_full_table_lets_go_of_guessers_not_yet_stopped_and_never_of_stopped_ones() {
        let guesses = KeyGuesses::default();
        let t0 = Instant::now();
        let address = |i: usize| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i as u32));
        for i in 0..MAX_GUESSERS + 1 {
            guesses.failed(address(i), t0);
        }
        assert_eq!(guesses.overflows.load(Ordering::Relaxed), MAX_GUESSERS as u64, "one wrong key each: let go");
        assert_eq!(guesses.table.lock().unwrap().by_address.len(), 1);
        // A table full of stopped addresses: they stay stopped, and a new one can't start guessing.
        for i in 0..MAX_GUESSERS {
            for _ in 0..MAX_KEY_GUESSES {
                guesses.failed(address(i), t0);
            }
        }
        let t1 = t0 + Duration::from_secs(1);
        assert!(guesses.may_try(address(0), t1).is_err());
        let newcomer = address(MAX_GUESSERS + 5);
        assert_eq!(guesses.may_try(newcomer, t1), Err(KEY_GUESS_WINDOW - Duration::from_secs(1)));
        guesses.failed(newcomer, t1);
        assert!(guesses.may_try(address(0), t1).is_err(), "still stopped");
        assert_eq!(guesses.may_try(newcomer, t0 + KEY_GUESS_WINDOW), Ok(()), "the stopped ones' windows are over");
    }

    #[test]
    fn ip_lists_and_forwarded_addresses() {
        let allow = IpList::parse("ALLOW_IPS", "10.0.0.0/8, 192.0.2.7 2001:db8::/32").unwrap();
        assert!(allow.contains("10.1.2.3".parse().unwrap()));
        assert!(allow.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(allow.contains("192.0.2.7".parse().unwrap()));
        assert!(!allow.contains("192.0.2.8".parse().unwrap()));
        assert!(allow.contains("2001:db8::1".parse().unwrap()));
        assert!(IpList::parse("ALLOW_IPS", "10.0.0.0/33").is_err());
        assert!(IpList::parse("ALLOW_IPS", "exotel").is_err());

        let trusted = IpList::parse("TRUSTED_PROXIES", "127.0.0.1").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 10.9.9.9".parse().unwrap());
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        // Behind the trusted proxy: the hop it saw, not what the client wrote at the left.
        assert_eq!(client_ip(proxy, &h, &trusted), "10.9.9.9".parse::<IpAddr>().unwrap());
        // From anyone else the header is ignored.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(client_ip(proxy, &h, &IpList::default()), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn basic_credentials() {
        let creds = BasicCredentials::parse("MEDIA_BASIC_AUTH", "exotel:s3cret:with-colon").unwrap();
        assert_eq!(creds.password, "s3cret:with-colon");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(creds.check(&with(&format!("Basic {}", B64.encode("exotel:s3cret:with-colon")))));
        assert!(creds.check(&with(&format!("basic {}", B64.encode("exotel:s3cret:with-colon")))));
        assert!(!creds.check(&with(&format!("Basic {}", B64.encode("exotel:wrong")))));
        assert!(!creds.check(&with(&format!("Basic {}", B64.encode("other:s3cret:with-colon")))));
        assert!(!creds.check(&with("Bearer x")));
        assert!(!creds.check(&with("Basic !!!")));
        assert!(!creds.check(&HeaderMap::new()));
        assert!(BasicCredentials::parse("X", "nopassword").is_err());
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    #[test]
    fn media_tokens() {
        let s = Secrets::from_passphrase("k");
        let call = TokenCall::Sid("abc123".into());
        let t = media_token(&s, &call, MEDIA_TOKEN_TTL);
        assert_eq!(verify_media_token(&s, &t), Ok(call));
        let ours = TokenCall::Ours("0193".into());
        assert_eq!(verify_media_token(&s, &media_token(&s, &ours, MEDIA_TOKEN_TTL)), Ok(ours));
        assert_eq!(verify_media_token(&s, &media_token(&s, &TokenCall::Any, MEDIA_TOKEN_TTL)), Ok(TokenCall::Any));
        // Another secret, another call, a later expiry: all forged.
        assert_eq!(verify_media_token(&Secrets::from_passphrase("j"), &t), Err(TokenError::Forged));
        let (body, mac) = t.rsplit_once('.').unwrap();
        let (_, expiry) = body.rsplit_once('.').unwrap();
        assert_eq!(verify_media_token(&s, &format!("sother.{expiry}.{mac}")), Err(TokenError::Forged));
        assert_eq!(verify_media_token(&s, &format!("sabc123.{}.{mac}", u64::MAX)), Err(TokenError::Forged));
        let old = media_token(&s, &TokenCall::Sid("x".into()), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(verify_media_token(&s, &old), Err(TokenError::Expired));
        for bad in ["", "x", "a.b", "sabc.notanumber.00", "zabc.1.00"] {
            assert!(verify_media_token(&s, bad).is_err(), "{bad}");
        }
    }
}
