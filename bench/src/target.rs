//! The request every mode sends: one URL, headers and a JSON body, from the command line.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

/// Where to send and what.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    /// URL to call (`http://127.0.0.1:PORT/...`; the benchmark stays on loopback).
    #[arg(long)]
    pub url: String,
    /// Extra request header `name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// JSON body, sent with POST.
    #[arg(long)]
    pub body: String,
}

/// Several named targets with their keys, for the modes that take turns between targets.
#[derive(clap::Args, Debug)]
pub struct NamedTargets {
    /// One target as `name=URL` (repeatable, in turn order).
    #[arg(long = "target", required = true, value_name = "NAME=URL")]
    pub targets: Vec<String>,
    /// The `api-key` of each target, in the order of `--target`.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// JSON body, sent with POST.
    #[arg(long)]
    pub body: String,
}

impl NamedTargets {
    /// `(name, target)` for each `--target`, in order.
    pub fn parse(&self) -> Result<Vec<(String, Target)>> {
        anyhow::ensure!(
            self.keys.len() == self.targets.len(),
            "give one --key per --target"
        );
        self.targets
            .iter()
            .zip(&self.keys)
            .map(|(spec, key)| {
                let (name, url) = spec
                    .split_once('=')
                    .with_context(|| format!("--target `{spec}` is not NAME=URL"))?;
                let target = Target::new(&TargetArgs {
                    url: url.to_owned(),
                    headers: vec![format!("api-key: {key}")],
                    body: self.body.clone(),
                })?;
                Ok((name.to_owned(), target))
            })
            .collect()
    }
}

/// A parsed [`TargetArgs`].
#[derive(Debug)]
pub struct Target {
    uri: Uri,
    /// `host:port`, to connect to and to send as `host`.
    pub authority: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Target {
    pub fn new(args: &TargetArgs) -> Result<Self> {
        let uri: Uri = args
            .url
            .parse()
            .with_context(|| format!("bad url {}", args.url))?;
        if uri.scheme_str() != Some("http") {
            bail!(
                "only http:// URLs are supported (loopback benchmark): {}",
                args.url
            );
        }
        let authority = uri
            .authority()
            .map(ToString::to_string)
            .context("url without host")?;
        let mut headers = vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        for header in &args.headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("header `{header}` is not `name: value`"))?;
            headers.push((
                HeaderName::from_bytes(name.trim().as_bytes())?,
                HeaderValue::from_str(value.trim())?,
            ));
        }
        Ok(Self {
            uri,
            authority,
            headers,
            body: Bytes::from(args.body.clone()),
        })
    }

    /// The request; `origin_form` for a raw connection (path only plus `host`), else the
    /// absolute URL a pooled client expects.
    pub fn request(&self, origin_form: bool) -> Result<Request<Full<Bytes>>> {
        let uri = if origin_form {
            self.uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()))
        } else {
            self.uri.clone()
        };
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(http::header::HOST, self.authority.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Full::new(self.body.clone()))?)
    }
}
