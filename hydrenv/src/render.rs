//! Rendering: Tera templates (embedded, overridable by a directory) → file contents in memory,
//! then validation of what was rendered, before anything touches the disk.

use std::collections::HashMap;
use std::path::Path;

use crate::settings::Settings;

/// One file of a release.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub name: &'static str,
    pub template: &'static str,
    pub contents: String,
    /// Holds a secret value (written 0600).
    pub secret: bool,
}

/// Never prints the contents of a file that holds secrets (a `{:?}` or a failed `unwrap` on a
/// render would otherwise show backend and client keys).
impl std::fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let contents: &dyn std::fmt::Debug = if self.secret {
            &"<redacted: holds secrets>"
        } else {
            &self.contents
        };
        f.debug_struct("RenderedFile")
            .field("name", &self.name)
            .field("template", &self.template)
            .field("contents", contents)
            .field("secret", &self.secret)
            .finish()
    }
}

/// What gets rendered: output file, template name, and the embedded default template.
pub const MANIFEST: &[(&str, &str, &str)] = &[
    (
        "gateway.yaml",
        "gateway.yaml.tera",
        include_str!("../../templates/gateway.yaml.tera"),
    ),
    (
        "otel-collector.yaml",
        "otel-collector.yaml.tera",
        include_str!("../../templates/otel-collector.yaml.tera"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    /// The rendered file would be refused; `problems` as the checker wrote them (for the
    /// gateway config, the proxy's parser: `path: message`).
    #[error("{file} (rendered from templates/{template}) would be rejected:\n{}", problems.join("\n"))]
    Invalid {
        file: String,
        template: String,
        problems: Vec<String>,
    },
    #[error("templates directory {dir}: {message}")]
    Templates { dir: String, message: String },
}

/// The loaded templates.
pub struct Templates {
    tera: tera::Tera,
}

impl Templates {
    /// The templates built into the binary.
    pub fn embedded() -> Result<Self, RenderError> {
        let sources: Vec<(&str, String)> = MANIFEST
            .iter()
            .map(|(_, t, s)| (*t, (*s).to_owned()))
            .collect();
        Self::from_sources(sources)
    }

    /// Templates from a directory; every template of the manifest must be there.
    pub fn from_dir(dir: &Path) -> Result<Self, RenderError> {
        let mut sources = Vec::new();
        for (_, template, _) in MANIFEST {
            let path = dir.join(template);
            let text = std::fs::read_to_string(&path).map_err(|e| RenderError::Templates {
                dir: dir.display().to_string(),
                message: format!("cannot read {template}: {e}"),
            })?;
            sources.push((*template, text));
        }
        Self::from_sources(sources)
    }

    fn from_sources(sources: Vec<(&str, String)>) -> Result<Self, RenderError> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        for (name, text) in &sources {
            tera.add_raw_template(name, text)
                .map_err(|e| RenderError::Template {
                    template: (*name).to_owned(),
                    message: error_chain(&e),
                })?;
        }
        tera.register_filter("yaml", yaml_filter);
        Ok(Self { tera })
    }

    /// Renders every file of the manifest from the settings.
    pub fn render(&self, settings: &Settings) -> Result<Vec<RenderedFile>, RenderError> {
        let context =
            tera::Context::from_serialize(settings).map_err(|e| RenderError::Template {
                template: "context".into(),
                message: error_chain(&e),
            })?;
        MANIFEST
            .iter()
            .map(|(name, template, _)| {
                let contents =
                    self.tera
                        .render(template, &context)
                        .map_err(|e| RenderError::Template {
                            template: (*template).to_owned(),
                            message: error_chain(&e),
                        })?;
                Ok(RenderedFile {
                    name,
                    template,
                    contents,
                    secret: false,
                })
            })
            .collect()
    }
}

/// `{{ value | yaml }}`: the value as a YAML scalar that cannot break out of its place. JSON
/// strings are valid YAML double-quoted scalars, with every quote, colon and newline escaped.
fn yaml_filter(value: &tera::Value, _: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    match value {
        tera::Value::String(_) | tera::Value::Number(_) | tera::Value::Bool(_) => {
            Ok(tera::Value::String(value.to_string()))
        }
        tera::Value::Null => Ok(tera::Value::String("null".into())),
        _ => Err(tera::Error::msg(
            "the yaml filter takes a string, number or boolean",
        )),
    }
}

/// Tera errors hide the useful part in their sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}

/// Validates rendered files: the gateway config with the proxy's own parser, the collector
/// config as YAML with complete, consistent pipelines.
pub fn validate(files: &[RenderedFile]) -> Result<(), RenderError> {
    for file in files {
        let invalid = |problems: Vec<String>| RenderError::Invalid {
            file: file.name.to_owned(),
            template: file.template.to_owned(),
            problems,
        };
        match file.name {
            "gateway.yaml" => {
                use proxy::config::ConfigError;
                proxy::GatewayConfig::parse(file.name, &file.contents).map_err(|e| {
                    invalid(match e {
                        ConfigError::Parse { message, .. } => vec![message],
                        ConfigError::Invalid { problems, .. } => problems,
                        other => vec![other.to_string()],
                    })
                })?;
            }
            "otel-collector.yaml" => crate::collector::validate(&file.contents)
                .map_err(|message| invalid(vec![message]))?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret_file() {
        let mut file = RenderedFile {
            name: "gateway.yaml",
            template: "gateway.yaml.tera",
            contents: "api_key: sk-live-1234".into(),
            secret: true,
        };
        assert!(!format!("{file:?}").contains("sk-live-1234"));
        file.secret = false;
        assert!(format!("{file:?}").contains("sk-live-1234"));
    }
}
