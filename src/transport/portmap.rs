//! Asking the home router to forward the server's UDP port: PCP and NAT-PMP (crab_nat) and
//! UPnP IGD (igd-next).
//!
//! [`PortMapping::map`] finds the router (the default gateway from `/proc/net/route`, or
//! SSDP multicast for UPnP), asks for a UDP mapping of the server's port (the same external
//! port if the router allows it), and learns the public address clients should use. A
//! background task renews the mapping at half its lifetime; [`PortMapping::remove`] deletes
//! it (call it on shutdown). Every failure is a [`PortMapError`] whose message says what was
//! tried and what the router said — never a panic: a server without a mapping still serves
//! its LAN and anyone the operator forwards a port for by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::num::NonZeroU16;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Which protocols to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapProtocol {
    /// PCP, then NAT-PMP, then UPnP IGD.
    #[default]
    Auto,
    /// PCP (falling back to NAT-PMP when the router asks for it).
    Pcp,
    /// NAT-PMP only.
    NatPmp,
    /// UPnP IGD only.
    Upnp,
}

impl FromStr for MapProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "pcp" => Ok(Self::Pcp),
            "natpmp" | "nat-pmp" => Ok(Self::NatPmp),
            "upnp" | "igd" => Ok(Self::Upnp),
            other => Err(format!(
                "unknown port-mapping protocol {other:?}: use auto, pcp, natpmp or upnp"
            )),
        }
    }
}

/// How to map.
#[derive(Debug, Clone)]
pub struct PortMapOptions {
    /// Protocols to try.
    pub protocol: MapProtocol,
    /// The router [default: the default gateway].
    pub gateway: Option<Ipv4Addr>,
    /// Requested lifetime; renewed at half of what the router grants.
    pub lifetime: Duration,
    /// How long to wait for each protocol's answer.
    pub timeout: Duration,
}

impl Default for PortMapOptions {
    fn default() -> Self {
        Self {
            protocol: MapProtocol::Auto,
            gateway: None,
            lifetime: Duration::from_secs(3600),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Why no mapping could be made (or removed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port mapping failed: {0}")]
pub struct PortMapError(pub String);

/// The protocol that made a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    /// PCP.
    Pcp,
    /// NAT-PMP.
    NatPmp,
    /// UPnP IGD.
    Upnp,
}

impl Used {
    /// Lower-case name, as printed in the `listening` event.
    pub fn name(self) -> &'static str {
        match self {
            Used::Pcp => "pcp",
            Used::NatPmp => "natpmp",
            Used::Upnp => "upnp",
        }
    }
}

/// One live mapping of either kind.
enum Live {
    Nat(crab_nat::PortMapping),
    Upnp {
        gateway: igd_next::Gateway,
        external_port: u16,
        local: SocketAddr,
    },
}

struct State {
    public: SocketAddr,
}

/// A live port mapping, renewed in the background until [`PortMapping::remove`].
pub struct PortMapping {
    used: Used,
    gateway: Ipv4Addr,
    state: Arc<Mutex<State>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), PortMapError>>>,
}

impl std::fmt::Debug for PortMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMapping")
            .field("used", &self.used)
            .field("gateway", &self.gateway)
            .field("public", &self.public_addr())
            .finish_non_exhaustive()
    }
}

/// The default IPv4 gateway, from the kernel's routing table.
pub fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_route_table(&table)
}

fn parse_route_table(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Iface Destination Gateway Flags ...; default route: destination 0, flag RTF_GATEWAY.
        if f.len() < 4 || f[1] != "00000000" {
            return None;
        }
        let flags = u16::from_str_radix(f[3], 16).ok()?;
        if flags & 0x2 == 0 {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        Some(Ipv4Addr::from(gw.to_le_bytes()))
    })
}

/// Our address on the link towards `gateway` (no packet is sent).
fn local_ip_towards(gateway: Ipv4Addr) -> Result<Ipv4Addr, PortMapError> {
    let s = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect((gateway, crab_nat::GATEWAY_PORT)).map(|_| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| PortMapError(format!("no route to the router {gateway}: {e}")))?;
    match s.ip() {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => Err(PortMapError("only IPv4 port mapping is supported".into())),
    }
}

fn nat_timeouts(timeout: Duration) -> crab_nat::TimeoutConfig {
    crab_nat::TimeoutConfig {
        initial_timeout: (timeout / 4).max(Duration::from_millis(100)),
        max_retries: 2,
        max_retry_timeout: Some(timeout),
    }
}

async fn map_nat(
    protocol: MapProtocol,
    gateway: Ipv4Addr,
    local_ip: Ipv4Addr,
    port: NonZeroU16,
    opts: &PortMapOptions,
) -> Result<(Live, Used, SocketAddr), String> {
    let options = crab_nat::PortMappingOptions {
        external_port: Some(port),
        lifetime_seconds: Some(opts.lifetime.as_secs().clamp(60, u64::from(u32::MAX)) as u32),
        timeout_config: Some(nat_timeouts(opts.timeout)),
    };
    let gw = crab_nat::GatewayAddress::IpV4(gateway);
    let mapping = if protocol == MapProtocol::NatPmp {
        crab_nat::natpmp::port_mapping(gw, crab_nat::InternetProtocol::Udp, port, options)
            .await
            .map_err(|e| format!("NAT-PMP to {gateway}:5351: {e}"))?
    } else {
        crab_nat::PortMapping::new(
            gw,
            IpAddr::V4(local_ip),
            crab_nat::InternetProtocol::Udp,
            port,
            options,
        )
        .await
        .map_err(|e| format!("PCP/NAT-PMP to {gateway}:5351: {e}"))?
    };
    let (used, ip) = match mapping.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => (Used::Pcp, external_ip),
        crab_nat::PortMappingType::NatPmp => {
            let ip = crab_nat::natpmp::external_address(gw, Some(nat_timeouts(opts.timeout)))
                .await
                .map_err(|e| format!("NAT-PMP external address from {gateway}: {e}"))?;
            (Used::NatPmp, IpAddr::V4(ip))
        }
    };
    let public = SocketAddr::new(ip, mapping.external_port().get());
    Ok((Live::Nat(mapping), used, public))
}

fn map_upnp_blocking(
    local: SocketAddr,
    opts: &PortMapOptions,
) -> Result<(Live, Used, SocketAddr), String> {
    use igd_next::{PortMappingProtocol, SearchOptions};
    let mut search = SearchOptions::default();
    search.bind_addr = SocketAddr::new(local.ip(), 0);
    search.timeout = Some(opts.timeout);
    search.single_search_timeout = Some(opts.timeout);
    let gateway = igd_next::search_gateway(search)
        .map_err(|e| format!("UPnP IGD: no router answered the SSDP search: {e}"))?;
    let lease = opts.lifetime.as_secs().min(u64::from(u32::MAX)) as u32;
    let want = local.port();
    let external_port =
        match gateway.add_port(PortMappingProtocol::UDP, want, local, lease, "LiveWire") {
            Ok(()) => want,
            Err(_) => gateway
                .add_any_port(PortMappingProtocol::UDP, local, lease, "LiveWire")
                .map_err(|e| format!("UPnP IGD at {}: AddPortMapping: {e}", gateway.addr))?,
        };
    let ip = match gateway.get_external_ip() {
        Ok(ip) => ip,
        Err(e) => {
            let _ = gateway.remove_port(PortMappingProtocol::UDP, external_port);
            return Err(format!(
                "UPnP IGD at {}: GetExternalIPAddress: {e}",
                gateway.addr
            ));
        }
    };
    Ok((
        Live::Upnp {
            gateway,
            external_port,
            local,
        },
        Used::Upnp,
        SocketAddr::new(ip, external_port),
    ))
}

async fn renew(live: &mut Live, lifetime: Duration) -> Result<Option<SocketAddr>, String> {
    match live {
        Live::Nat(m) => {
            m.renew().await.map_err(|e| e.to_string())?;
            Ok(None)
        }
        Live::Upnp {
            gateway,
            external_port,
            local,
        } => {
            let (gw, port, local) = (gateway.clone(), *external_port, *local);
            let lease = lifetime.as_secs().min(u64::from(u32::MAX)) as u32;
            tokio::task::spawn_blocking(move || {
                gw.add_port(
                    igd_next::PortMappingProtocol::UDP,
                    port,
                    local,
                    lease,
                    "LiveWire",
                )
                .map_err(|e| e.to_string())?;
                gw.get_external_ip()
                    .map(|ip| Some(SocketAddr::new(ip, port)))
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        }
    }
}

async fn unmap(live: Live) -> Result<(), String> {
    match live {
        Live::Nat(m) => m.try_drop().await.map_err(|(e, _)| e.to_string()),
        Live::Upnp {
            gateway,
            external_port,
            ..
        } => tokio::task::spawn_blocking(move || {
            gateway
                .remove_port(igd_next::PortMappingProtocol::UDP, external_port)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?,
    }
}

fn granted(live: &Live, asked: Duration) -> Duration {
    match live {
        Live::Nat(m) => Duration::from_secs(u64::from(m.lifetime())),
        Live::Upnp { .. } => asked,
    }
}

impl PortMapping {
    /// Maps the UDP port of `local` (the server's bound address; a wildcard IP is replaced by
    /// our address towards the router) and starts renewing it. Must run in a tokio runtime.
    pub async fn map(local: SocketAddr, opts: PortMapOptions) -> Result<Self, PortMapError> {
        let port = NonZeroU16::new(local.port())
            .ok_or_else(|| PortMapError("the server has no port yet".into()))?;
        let gateway = opts.gateway.or_else(default_gateway).ok_or_else(|| {
            PortMapError("no default IPv4 gateway (is this machine behind a router?)".into())
        })?;
        let local_ip = match local.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => ip,
            IpAddr::V4(_) => local_ip_towards(gateway)?,
            IpAddr::V6(_) => {
                return Err(PortMapError(
                    "only IPv4 port mapping is supported: listen on an IPv4 address".into(),
                ));
            }
        };
        let local = SocketAddr::new(IpAddr::V4(local_ip), port.get());
        let mut tried = Vec::new();
        let mut made = None;
        if opts.protocol != MapProtocol::Upnp {
            match map_nat(opts.protocol, gateway, local_ip, port, &opts).await {
                Ok(m) => made = Some(m),
                Err(e) => tried.push(e),
            }
        }
        if made.is_none() && matches!(opts.protocol, MapProtocol::Upnp | MapProtocol::Auto) {
            let o = opts.clone();
            let r = tokio::task::spawn_blocking(move || map_upnp_blocking(local, &o))
                .await
                .map_err(|e| PortMapError(e.to_string()))?;
            match r {
                Ok(m) => made = Some(m),
                Err(e) => tried.push(e),
            }
        }
        let Some((live, used, public)) = made else {
            return Err(PortMapError(tried.join("; ")));
        };
        info!(protocol = used.name(), %public, %local, "port mapped");
        let state = Arc::new(Mutex::new(State { public }));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(maintain(live, opts.lifetime, state.clone(), stopped));
        Ok(Self {
            used,
            gateway,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address clients on the internet should use.
    pub fn public_addr(&self) -> SocketAddr {
        self.state
            .lock()
            .map(|s| s.public)
            .unwrap_or_else(|p| p.into_inner().public)
    }

    /// The protocol that made the mapping.
    pub fn protocol(&self) -> Used {
        self.used
    }

    /// The router that holds the mapping.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Stops renewing and deletes the mapping on the router.
    pub async fn remove(mut self) -> Result<(), PortMapError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(t) => t.await.map_err(|e| PortMapError(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for PortMapping {
    fn drop(&mut self) {
        // Dropped without remove(): the task still deletes the mapping if the runtime lives.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn maintain(
    mut live: Live,
    lifetime: Duration,
    state: Arc<Mutex<State>>,
    mut stopped: oneshot::Receiver<()>,
) -> Result<(), PortMapError> {
    let mut wait = (granted(&live, lifetime) / 2).max(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = tokio::time::sleep(wait) => {
                match renew(&mut live, lifetime).await {
                    Ok(addr) => {
                        if let Some(addr) = addr
                            && let Ok(mut s) = state.lock()
                            && s.public != addr
                        {
                            warn!(old = %s.public, new = %addr, "the public address changed");
                            s.public = addr;
                        }
                        wait = (granted(&live, lifetime) / 2).max(Duration::from_secs(5));
                        info!(next_in = ?wait, "port mapping renewed");
                    }
                    Err(e) => {
                        warn!("port mapping renewal failed (retrying in 30 s): {e}");
                        wait = Duration::from_secs(30);
                    }
                }
            }
        }
    }
    unmap(live)
        .await
        .map_err(|e| PortMapError(format!("cannot remove the mapping: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_gateway() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(parse_route_table(table), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse_route_table("Iface\tDestination\n"), None);
    }

    #[test]
    fn protocol_names_parse() {
        assert_eq!("UPnP".parse::<MapProtocol>(), Ok(MapProtocol::Upnp));
        assert_eq!("nat-pmp".parse::<MapProtocol>(), Ok(MapProtocol::NatPmp));
        assert!("carrier-pigeon".parse::<MapProtocol>().is_err());
    }

    #[tokio::test]
    async fn no_router_is_a_clear_error() {
        // 127.0.0.1 has nothing on 5351 and no SSDP responder: a prompt, readable failure.
        let opts = PortMapOptions {
            protocol: MapProtocol::NatPmp,
            gateway: Some(Ipv4Addr::LOCALHOST),
            timeout: Duration::from_millis(300),
            ..PortMapOptions::default()
        };
        let err = PortMapping::map("127.0.0.1:7447".parse().unwrap(), opts)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("NAT-PMP"), "{err}");
    }
}
