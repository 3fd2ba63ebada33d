//! What a value must look like to work once it is sent: backend endpoints (http or https, a
//! host, no userinfo, query or fragment), the Redis URL of the limits, and the values that
//! travel in HTTP headers (backend keys and names, client keys). A value that cannot be sent is
//! refused, never trimmed or replaced behind the operator's back. Messages say why, and never
//! quote a secret: a check that names the value quotes `shown`, the form its caller chose
//! (`Reader::quote`: the placeholder of a hidden variable), never the value itself.

/// Why the variable usually has a line break, and what to do about it.
const LINE_BREAK_HINT: &str = "a trailing newline usually comes from `echo` into a secret file \
     or a Key Vault secret set from a file: store the value without it (`printf %s`, `echo -n`)";

/// A backend base URL: `http(s)://host[:port][/path]`. The path is ignored by the gateway;
/// userinfo would be sent in the `Host` header, and query and fragment would be dropped.
pub fn endpoint(value: &str, shown: &str) -> Result<(), String> {
    let value = value.trim();
    let like = "like https://eus.openai.azure.com";
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!("`{shown}` is not a URL {like}"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("`{shown}`: the scheme must be http or https"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{shown}` contains whitespace or a control character"
        ));
    }
    if !value.is_ascii() {
        return Err(format!(
            "`{shown}` contains a non-ASCII character (write an international domain name in its xn-- form)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{shown}` carries a user name or password: it would be sent to the backend in the \
             Host header; remove it (the backend's key goes in AZURE_OPENAI_KEY_N)"
        ));
    }
    if authority.is_empty() {
        return Err(format!("`{shown}` has no host"));
    }
    let url =
        reqwest::Url::parse(value).map_err(|e| format!("`{shown}` is not a URL {like}: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` has no host"));
    }
    if url.query().is_some() {
        return Err(format!(
            "`{shown}` has a query (`?...`), which the gateway would drop: requests keep the \
             client's query (AZURE_OPENAI_API_VERSION_N forces an api-version)"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!("`{shown}` has a fragment (`#...`)"));
    }
    Ok(())
}

/// A URL of a service hydrenv authenticates to with the managed identity: no userinfo.
pub fn no_userinfo(value: &str, shown: &str) -> Result<(), String> {
    let rest = value
        .trim()
        .split_once("://")
        .map_or(value, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{shown}` carries a user name or password; remove it (the managed identity authenticates)"
        ));
    }
    Ok(())
}

/// A Redis URL for the limits' shared counters: `redis://` or `rediss://` (TLS) with a host, as the
/// proxy's own check reads it. It may carry a password, so no message quotes any part of it.
pub fn redis_url(value: &str) -> Result<(), String> {
    let like = "like rediss://:password@host:6380";
    if value.ends_with(['\n', '\r']) {
        return Err(format!("ends with a line break; {LINE_BREAK_HINT}"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character".into());
    }
    match value.split_once("://") {
        Some(("redis" | "rediss", _)) => {}
        Some(_) => {
            return Err(format!(
                "the scheme must be redis:// or rediss:// (TLS), in lower case: a URL {like}"
            ));
        }
        None => return Err(format!("is not a URL {like}")),
    }
    // With the scheme checked above, the proxy's messages quote nothing of the value.
    proxy::stages::limits::config::check_redis_url(value).map_err(|why| {
        format!("{why} (a password holding `/`, `?`, `#`, `@` or `%` must be percent-encoded)")
    })
}

/// A backend api-key: sent as the `api-key` header value, so visible ASCII, inner spaces at
/// most. Anything else used to go out as an empty header and get 401 on every request.
pub fn backend_key(value: &str) -> Result<(), String> {
    let header = "so it cannot be sent in the api-key header (every request would get 401)";
    if value.ends_with(['\n', '\r']) {
        return Err(format!(
            "ends with a line break, {header}; {LINE_BREAK_HINT}"
        ));
    }
    if value.contains(['\n', '\r']) {
        return Err(format!("contains a line break, {header}"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("contains a control character, {header}"));
    }
    if value.trim() != value {
        return Err(
            "starts or ends with whitespace, which HTTP drops: the backend would see another key"
                .into(),
        );
    }
    if !value.is_ascii() {
        return Err(format!("contains a non-ASCII character, {header}"));
    }
    Ok(())
}

/// A client key: presented by clients in `api-key` or `Authorization: Bearer`, so visible ASCII
/// without whitespace; any other key could never be presented, and its consumer never log in.
pub fn client_key(value: &str) -> Result<(), String> {
    let never = "so no client could ever present it";
    if value.ends_with(['\n', '\r']) {
        return Err(format!(
            "ends with a line break, {never}; {LINE_BREAK_HINT}"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("contains a control character, {never}"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!(
            "contains whitespace, {never} (HTTP drops it around a header value, and a bearer token cannot hold it)"
        ));
    }
    if !value.is_ascii() {
        return Err(format!(
            "contains a non-ASCII character, {never} (header values are ASCII)"
        ));
    }
    Ok(())
}

/// A backend name: sent in the `x-gateway-backend` response header and used as a metric label.
pub fn backend_name(value: &str, shown: &str) -> Result<(), String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "`{shown}` must be visible ASCII without spaces: it is sent in the x-gateway-backend header"
        ));
    }
    Ok(())
}

/// One side of a deployment alias: a name that goes into the request path.
pub fn deployment_name(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_graphic())
        && !value.contains(['/', '?', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`endpoint`] quoting the endpoint as a visible variable's is quoted.
    fn endpoint(value: &str) -> Result<(), String> {
        super::endpoint(value, &proxy::config::backends::shown_endpoint(value))
    }

    #[test]
    fn endpoints() {
        for good in [
            "https://eus.openai.azure.com",
            "https://eus.openai.azure.com/",
            "https://wus.openai.azure.com/some/path",
            "http://127.0.0.1:8081",
            "HTTPS://EUS.openai.azure.com",
            "http://[::1]:9000",
        ] {
            assert_eq!(endpoint(good), Ok(()), "{good}");
        }
        let refused = |value: &str, why: &str| {
            let error = endpoint(value).expect_err(value);
            assert!(error.contains(why), "{value}: {error}");
            assert!(!error.contains("pw"), "{value}: {error}");
        };
        refused("not a url", "is not a URL like https://");
        refused("eus.openai.azure.com", "is not a URL");
        refused("ftp://host", "must be http or https");
        refused("https://", "has no host");
        refused("https:///path", "has no host");
        refused("http://user:pw@host", "user name or password");
        refused("http://user:pw@host/path", "`http://***@host/path`");
        refused("http://@host", "user name or password");
        refused("https://host?api-version=1", "`https://host` has a query");
        refused("https://host/?api-key=pw", "`https://host/` has a query");
        refused("https://host/#frag", "has a fragment");
        refused("https://ho st", "whitespace");
        refused("https://ho\nst", "whitespace");
        assert_eq!(
            endpoint(" https://host\n"),
            Ok(()),
            "trimmed like every value"
        );
        refused("https://bücher.example", "xn--");
        refused("https://host:99999", "is not a URL");
    }

    #[test]
    fn redis_urls_are_checked_without_quoting_them() {
        for good in [
            "redis://localhost",
            "redis://:pw-3f9a@redis.internal:6379/2",
            "rediss://default:pw-3f9a@cache.redis.azure.net:10000",
        ] {
            assert_eq!(redis_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            (
                "http://:pw-3f9a@redis.internal:6379",
                "the scheme must be redis://",
            ),
            ("REDIS://:pw-3f9a@redis.internal", "in lower case"),
            ("pw-3f9a@redis.internal:6379", "is not a URL like rediss://"),
            ("redis://:pw-3f9a@", "with a host"),
            (
                "redis://:pw/3f9a@redis.internal:6379",
                "must be percent-encoded",
            ),
            (
                "redis://:pw-3f9a@redis.internal\n",
                "ends with a line break",
            ),
            ("redis://:pw 3f9a@redis.internal", "whitespace"),
        ] {
            let error = redis_url(bad).expect_err(bad);
            assert!(error.contains(why), "{bad:?}: {error}");
            for part in ["pw", "3f9a", "redis.internal", "http"] {
                assert!(!error.contains(part), "{bad:?} quoted `{part}`: {error}");
            }
        }
    }

    #[test]
    fn keys_that_cannot_be_sent() {
        assert_eq!(backend_key("0123456789abcdef"), Ok(()));
        let error = backend_key("sk-abc\n").unwrap_err();
        assert!(
            error.starts_with("ends with a line break") && error.contains("echo"),
            "{error}"
        );
        assert!(!error.contains("sk-abc"));
        assert!(
            backend_key("sk-abc\r\n")
                .unwrap_err()
                .contains("line break")
        );
        assert!(backend_key("sk\u{0}abc").unwrap_err().contains("control"));
        assert!(backend_key(" sk-abc").unwrap_err().contains("whitespace"));
        assert!(backend_key("sk-äbc").unwrap_err().contains("non-ASCII"));

        assert_eq!(client_key("ck-team-a"), Ok(()));
        assert!(client_key("ck-a\n").unwrap_err().contains("echo"));
        assert!(client_key("ck a").unwrap_err().contains("whitespace"));
        assert!(client_key("ck\ta").unwrap_err().contains("control"));
        assert!(client_key("ck-ä").unwrap_err().contains("non-ASCII"));
    }

    #[test]
    fn names_that_go_into_headers() {
        let backend_name = |value: &str| super::backend_name(value, "shown");
        assert_eq!(backend_name("eus-ptu_1.x"), Ok(()));
        assert!(
            backend_name("eus ptu")
                .unwrap_err()
                .starts_with("`shown` must be")
        );
        assert!(backend_name("eus\u{7f}").is_err());
        assert!(backend_name("é").is_err());
        assert!(deployment_name("gpt-4o"));
        assert!(!deployment_name("gpt 4o") && !deployment_name("a/b") && !deployment_name(""));
    }
}
