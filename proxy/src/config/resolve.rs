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
        limits,
        cache,
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
    let limits = crate::stages::limits::config::resolve(limits, &mut problems);
    let cache = crate::stages::cache::config::resolve(cache, &mut problems);
    let log = log::resolve(log, &mut problems);
    let token_quotas = clients.consumers.iter().any(|c| c.token_quota.is_some());
    if token_quotas && limits.quota.is_none() {
        problems.push(
            "clients.consumers",
            "a consumer has a token_quota, but limits.quota (its window) is not set",
        );
    }
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
        limits,
        cache,
        log,
    })
}
