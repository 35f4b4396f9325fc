//! Which address a client connects to when a service has several: the nodes of a cluster
//! (`--server a:7447,b:7447`), a name with several addresses, or both.
//!
//! - [`ServerList`] is what the user gave: `HOST:PORT` entries, in order.
//! - [`resolve`] turns it into [`Candidate`]s: every address of every entry (a name that
//!   resolves to several addresses gives several candidates), duplicates dropped.
//! - [`rotate`] starts the list after the address of the last connection, so a client that
//!   lost its node tries the next one first (round robin), and comes back to the lost one
//!   last.
//! - [`race`] connects "happy eyeballs" style (RFC 8305): the first candidate gets
//!   [`STAGGER`] to answer before the next one is tried beside it, and the first handshake
//!   to complete wins. A node that is down does not answer at all (UDP: no refusal comes
//!   back), so trying one address after another would cost a whole handshake timeout per
//!   dead node.
//!
//! The reconnect backoff is unchanged: one round of [`race`] over every address is one
//! attempt.
//!
//! Pins: a cluster presents one certificate, so a server list has one pin, kept under each
//! of its entries in the pin file (`host:port`, as for a single server: old pin files keep
//! working). [`list_pin`] finds it under any entry; the caller records it under the
//! entries that lack it, so an address added to the list later is not a "new server".

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::task::JoinSet;

/// How long one address gets to complete its handshake before the next one is tried too
/// (RFC 8305's recommended "Connection Attempt Delay").
pub const STAGGER: Duration = Duration::from_millis(250);

/// A `--server` value that is not a list of `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerListError {
    /// Nothing but commas and spaces.
    #[error("no server address given: --server takes HOST:PORT[,HOST:PORT…]")]
    Empty,
    /// An entry without a port, or with a bad one.
    #[error(
        "{0:?} is not HOST:PORT: --server takes HOST:PORT[,HOST:PORT…] (an IPv6 address in brackets: [::1]:7447)"
    )]
    NotHostPort(String),
}

/// The `HOST:PORT` entries of one service, in the order given, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerList {
    entries: Vec<String>,
}

impl ServerList {
    /// Parses `a:7447`, `a:7447,b:7447` or `a:7447, b:7447`.
    pub fn parse(text: &str) -> Result<Self, ServerListError> {
        let mut entries: Vec<String> = Vec::new();
        for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !is_host_port(piece) {
                return Err(ServerListError::NotHostPort(piece.to_owned()));
            }
            if !entries.iter().any(|e| e.eq_ignore_ascii_case(piece)) {
                entries.push(piece.to_owned());
            }
        }
        if entries.is_empty() {
            return Err(ServerListError::Empty);
        }
        Ok(Self { entries })
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }
}

impl fmt::Display for ServerList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries.join(", "))
    }
}

/// `host:port` with a non-zero port; an IPv6 address must be in brackets.
fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && !host.contains(':') && !host.contains(char::is_whitespace),
    };
    port_ok && host_ok
}

/// A server field as typed in a form with a separate port: each comma-separated entry
/// without a port gets `default_port` (an IPv6 address also gets its brackets), so
/// `"a, b:7448"` with 7447 is `"a:7447, b:7448"`.
pub fn with_default_port(text: &str, default_port: u16) -> String {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if is_host_port(p) {
                p.to_owned()
            } else if p.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
                format!("[{p}]:{default_port}")
            } else {
                format!("{p}:{default_port}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One address to try, and the entry of the [`ServerList`] it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into [`ServerList::entries`].
    pub entry: usize,
    /// The address.
    pub addr: SocketAddr,
}

/// Every address of every entry, in order (a name's addresses in the resolver's order),
/// each once. An entry that does not resolve is skipped; only when none resolves is it an
/// error, naming each failure.
pub async fn resolve(list: &ServerList) -> Result<Vec<Candidate>, String> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut errors = Vec::new();
    for (entry, name) in list.entries().iter().enumerate() {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => {
                for addr in addrs {
                    if !out.iter().any(|c| c.addr == addr) {
                        out.push(Candidate { entry, addr });
                    }
                }
            }
            Err(e) => errors.push(format!("cannot resolve {name}: {e}")),
        }
    }
    if out.is_empty() {
        if errors.is_empty() {
            errors.push(format!("{list} has no address"));
        }
        return Err(errors.join("; "));
    }
    Ok(out)
}

/// Starts the candidates after `last` (the address of the last connection), wrapping
/// around; unchanged when `last` is not among them.
pub fn rotate(mut candidates: Vec<Candidate>, last: Option<SocketAddr>) -> Vec<Candidate> {
    if let Some(i) = last.and_then(|l| candidates.iter().position(|c| c.addr == l)) {
        candidates.rotate_left(i + 1);
    }
    candidates
}

/// The one pin of a server list: the fingerprint pinned for any of its entries. `Err`
/// names the entries when they are pinned to different certificates (the nodes of a
/// cluster share one, so that is a mistake the user must resolve, not something to guess).
pub fn list_pin(
    pins: &BTreeMap<String, String>,
    list: &ServerList,
) -> Result<Option<String>, String> {
    let mut found: Option<(&str, &str)> = None;
    for e in list.entries() {
        let Some(fp) = pins.get(e) else { continue };
        match found {
            None => found = Some((e, fp)),
            Some((first, want)) if want != fp => {
                return Err(format!(
                    "{first} and {e} are pinned to different certificates ({want} and {fp}); \
                     the nodes of one LiveWire cluster present one certificate"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(found.map(|(_, fp)| fp.to_owned()))
}

/// Runs `attempt` on the candidates in order, starting the next one after [`STAGGER`]
/// (or at once when every running attempt has failed), and returns the first success
/// with its candidate. A failure for which `is_final` holds ends the race with that
/// error alone; otherwise, when every candidate failed, all the errors are returned.
/// The attempts still running when one wins are dropped (a quinn `Connecting` dropped
/// closes its connection).
pub async fn race<T, E, Fut>(
    candidates: &[Candidate],
    stagger: Duration,
    mut attempt: impl FnMut(Candidate) -> Fut,
    is_final: impl Fn(&E) -> bool,
) -> Result<(Candidate, T), Vec<E>>
where
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let mut running = JoinSet::new();
    let mut next = 0;
    let mut errors = Vec::new();
    loop {
        if running.is_empty() {
            let Some(&c) = candidates.get(next) else {
                return Err(errors);
            };
            let fut = attempt(c);
            running.spawn(async move { (c, fut.await) });
            next += 1;
        }
        let more = next < candidates.len();
        tokio::select! {
            done = running.join_next() => match done {
                Some(Ok((c, Ok(t)))) => return Ok((c, t)),
                Some(Ok((_, Err(e)))) if is_final(&e) => return Err(vec![e]),
                Some(Ok((_, Err(e)))) => errors.push(e),
                // An attempt that panicked is a bug elsewhere; the others go on.
                Some(Err(join)) => tracing::warn!("a connection attempt failed: {join}"),
                None => {}
            },
            _ = tokio::time::sleep(stagger), if more => {
                let c = candidates[next];
                let fut = attempt(c);
                running.spawn(async move { (c, fut.await) });
                next += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn cand(entry: usize, port: u16) -> Candidate {
        Candidate {
            entry,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn lists_parse_with_commas_and_spaces() {
        let l = ServerList::parse("a:7447, b:7448,[::1]:7449").unwrap();
        assert_eq!(l.entries(), ["a:7447", "b:7448", "[::1]:7449"]);
        assert_eq!(l.to_string(), "a:7447, b:7448, [::1]:7449");
        // Duplicates (any case) once; stray commas ignored.
        let l = ServerList::parse("a:1,A:1,,b:2,").unwrap();
        assert_eq!(l.entries(), ["a:1", "b:2"]);
        assert_eq!(ServerList::parse(" , "), Err(ServerListError::Empty));
        for bad in [
            "a", "a:", "a:0", "a:x", ":7447", "::1:7447", "a b:1", "a:1,b",
        ] {
            assert!(ServerList::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_form_field_gets_the_default_port() {
        assert_eq!(with_default_port("a", 7447), "a:7447");
        assert_eq!(with_default_port("a, b:7448", 7447), "a:7447, b:7448");
        assert_eq!(with_default_port("::1", 7447), "[::1]:7447");
        assert_eq!(with_default_port("[::1]:9", 7447), "[::1]:9");
    }

    #[tokio::test]
    async fn ip_literals_resolve_in_order_without_duplicates() {
        let l = ServerList::parse("127.0.0.1:5, [::1]:6, 127.0.0.1:5").unwrap();
        let c = resolve(&l).await.unwrap();
        let addrs: Vec<String> = c.iter().map(|c| c.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:5", "[::1]:6"]);
        assert_eq!(c[1].entry, 1);
        let bad = ServerList::parse("no-such-host.invalid:5").unwrap();
        let e = resolve(&bad).await.unwrap_err();
        assert!(e.contains("cannot resolve no-such-host.invalid:5"), "{e}");
    }

    #[test]
    fn rotation_starts_after_the_last_connection() {
        let c = vec![cand(0, 1), cand(1, 2), cand(2, 3)];
        let ports = |v: Vec<Candidate>| v.iter().map(|c| c.addr.port()).collect::<Vec<_>>();
        assert_eq!(ports(rotate(c.clone(), None)), [1, 2, 3]);
        assert_eq!(ports(rotate(c.clone(), Some(c[0].addr))), [2, 3, 1]);
        assert_eq!(ports(rotate(c.clone(), Some(c[2].addr))), [1, 2, 3]);
        let gone = SocketAddr::from(([10, 0, 0, 1], 9));
        assert_eq!(ports(rotate(c, Some(gone))), [1, 2, 3]);
    }

    #[test]
    fn one_pin_covers_the_list_and_conflicts_are_refused() {
        let l = ServerList::parse("a:1,b:2").unwrap();
        let mut pins = BTreeMap::new();
        assert_eq!(list_pin(&pins, &l), Ok(None));
        pins.insert("b:2".to_owned(), "SHA256:bb".to_owned());
        assert_eq!(list_pin(&pins, &l), Ok(Some("SHA256:bb".to_owned())));
        pins.insert("a:1".to_owned(), "SHA256:bb".to_owned());
        assert_eq!(list_pin(&pins, &l), Ok(Some("SHA256:bb".to_owned())));
        pins.insert("a:1".to_owned(), "SHA256:aa".to_owned());
        let e = list_pin(&pins, &l).unwrap_err();
        assert!(e.contains("a:1 and b:2") && e.contains("SHA256:aa"), "{e}");
    }

    /// An attempt that answers after `delay` (or never), counting how many were started.
    fn attempt(
        started: &Arc<AtomicUsize>,
        plan: Vec<Option<Result<Duration, &'static str>>>,
    ) -> impl FnMut(Candidate) -> std::pin::Pin<Box<dyn Future<Output = Result<u16, String>> + Send>>
    {
        let started = started.clone();
        move |c: Candidate| {
            started.fetch_add(1, Ordering::SeqCst);
            let step = plan[c.entry];
            Box::pin(async move {
                match step {
                    None => std::future::pending().await,
                    Some(Ok(d)) => {
                        tokio::time::sleep(d).await;
                        Ok(c.addr.port())
                    }
                    Some(Err(e)) => Err(format!("{}: {e}", c.addr.port())),
                }
            })
        }
    }

    #[tokio::test]
    async fn a_silent_first_address_does_not_hold_up_the_second() {
        let started = Arc::new(AtomicUsize::new(0));
        let c = [cand(0, 1), cand(1, 2)];
        let plan = vec![None, Some(Ok(Duration::from_millis(5)))];
        let stagger = Duration::from_millis(20);
        let (won, port) = race(&c, stagger, attempt(&started, plan), |_| false)
            .await
            .unwrap();
        assert_eq!((won.entry, port), (1, 2));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_quick_first_answer_never_starts_the_others() {
        let started = Arc::new(AtomicUsize::new(0));
        let c = [cand(0, 1), cand(1, 2)];
        let plan = vec![Some(Ok(Duration::ZERO)), Some(Ok(Duration::ZERO))];
        let (won, _) = race(&c, Duration::from_secs(30), attempt(&started, plan), |_| {
            false
        })
        .await
        .unwrap();
        assert_eq!(won.entry, 0);
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_starts_the_next_at_once_and_all_failures_are_reported() {
        let started = Arc::new(AtomicUsize::new(0));
        let c = [cand(0, 1), cand(1, 2), cand(2, 3)];
        let plan = vec![Some(Err("down")), Some(Err("down")), Some(Err("down"))];
        // A stagger of a minute: only "start at once after a failure" lets this finish.
        let errors = race(&c, Duration::from_secs(60), attempt(&started, plan), |_| {
            false
        })
        .await
        .unwrap_err();
        assert_eq!(errors, ["1: down", "2: down", "3: down"]);
    }

    #[tokio::test]
    async fn a_final_error_ends_the_race() {
        let started = Arc::new(AtomicUsize::new(0));
        let c = [cand(0, 1), cand(1, 2)];
        let plan = vec![Some(Err("mismatch")), Some(Ok(Duration::ZERO))];
        let errors = race(
            &c,
            Duration::from_secs(60),
            attempt(&started, plan),
            |e: &String| e.contains("mismatch"),
        )
        .await
        .unwrap_err();
        assert_eq!(errors, ["1: mismatch"]);
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }
}
