//! What one entry of the variable table says ([`super::VARS`]), and its constructors.

/// Where a variable ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Rendered into the gateway config.
    Gateway,
    /// Rendered into the OpenTelemetry Collector config.
    Collector,
    /// Used by hydrenv itself (Key Vault, release location, supervise).
    Hydrenv,
    /// Read at run time by the proxy's own identity code, never written to files.
    Runtime,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::Gateway => "gateway config",
            Target::Collector => "collector config",
            Target::Hydrenv => "hydrenv",
            Target::Runtime => "proxy at run time",
        }
    }
}

/// Whether the feature behind a variable exists in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Built,
    /// Setting the variable is an error naming this feature (an `ENABLE_*` flag may be `false`).
    NotBuilt(&'static str),
}

/// One documented variable. Group variables are written with an `_N` suffix.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// Default as text; empty = none.
    pub default: &'static str,
    pub secret: bool,
    pub target: Target,
    pub status: Status,
    pub help: &'static str,
}

pub(super) const fn var(
    name: &'static str,
    default: &'static str,
    target: Target,
    help: &'static str,
) -> Var {
    Var {
        name,
        default,
        secret: false,
        target,
        status: Status::Built,
        help,
    }
}

impl Var {
    /// Marks the value secret: redacted in dry runs, diffs, `explain`, errors and logs. Independent
    /// of [`Status`]: a variable whose feature is not built is refused when set, and that refusal
    /// must not show its value either.
    pub(super) const fn secret(self) -> Var {
        Var {
            secret: true,
            ..self
        }
    }
}

pub(super) const fn later(
    name: &'static str,
    default: &'static str,
    feature: &'static str,
    help: &'static str,
) -> Var {
    Var {
        status: Status::NotBuilt(feature),
        ..var(name, default, Target::Gateway, help)
    }
}
