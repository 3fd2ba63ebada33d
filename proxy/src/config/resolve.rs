//! Raw file types → runtime config: each section is resolved by the module that owns it, and
//! every problem of every section is collected with its field path, so a user sees all of them
//! at once.

use super::raw::RawConfig;
use super::*;

pub(super) fn resolve(raw: RawConfig) -> Result<GatewayConfig, Vec<String>> {
    let RawConfig {
        version,
        server,
        upstream,
        balancer,
        backends,
        clients,
        responses,
        log,
    } = raw;
    let mut problems = Problems::default();
    if version != CONFIG_VERSION {
        problems.push(
            "version",
            format!("unsupported version {version} (this build reads version {CONFIG_VERSION})"),
        );
    }
    let server = server::resolve(server, &mut problems);
    let backends = backends::resolve(backends, &mut problems);
    let upstream = upstream::resolve(upstream, backends.len(), &mut problems);
    let balancer = balancer::resolve(balancer, &mut problems);
    let clients = crate::stages::auth::config::resolve(clients, &mut problems);
    let responses = crate::stages::affinity::config::resolve(responses, &mut problems);
    let log = log::resolve(log, &mut problems);
    if let BalancerConfig::ConsistentHash {
        on: HashOn::Consumer,
        ..
    } = balancer
        && clients.consumers.is_empty()
    {
        problems.push(
            "balancer.hash_on",
            "`consumer` needs at least one entry in clients.consumers",
        );
    }
    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(GatewayConfig {
        server,
        upstream,
        balancer,
        backends,
        clients,
        responses,
        log,
    })
}
