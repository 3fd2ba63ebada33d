//! The Terraform stages as parsed HCL (hcl-rs): their variables, outputs, locals, resources and
//! example tfvars, and the evaluation of locals and validation conditions for given inputs.
//! Terraform itself cannot run here (its providers cannot be downloaded), so this is what stands
//! in for `terraform validate` and `plan` where the environment contract is concerned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Expression, Map, Value};

use super::funcs;

/// The stages in apply order.
pub const STAGES: [&str; 4] = ["00-bootstrap", "10-platform", "20-openai", "30-workload"];

pub fn terraform_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("terraform")
}

pub struct Stage {
    pub name: &'static str,
    pub body: Body,
}

impl Stage {
    /// Every `*.tf` file of the stage, in name order, as one body.
    pub fn load(name: &'static str) -> Stage {
        let dir = terraform_root().join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name} has no .tf file");
        let mut structures = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            structures.extend(body.into_inner());
        }
        Stage {
            name,
            body: Body(structures),
        }
    }

    pub fn blocks<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Block> + use<'a> {
        blocks(&self.body, kind)
    }

    pub fn variables(&self) -> BTreeMap<&str, &Block> {
        self.blocks("variable").map(|b| (label(b, 0), b)).collect()
    }

    pub fn outputs(&self) -> BTreeMap<&str, &Block> {
        self.blocks("output").map(|b| (label(b, 0), b)).collect()
    }

    /// `resource "<kind>" "<name>"`.
    pub fn resource(&self, kind: &str, name: &str) -> &Block {
        self.blocks("resource")
            .find(|b| label(b, 0) == kind && label(b, 1) == name)
            .unwrap_or_else(|| panic!("{}: no resource {kind}.{name}", self.name))
    }

    /// Every `locals` entry, in file order.
    pub fn locals(&self) -> Vec<(String, Expression)> {
        self.blocks("locals")
            .flat_map(|b| b.body().attributes())
            .map(|a| (a.key.to_string(), a.expr.clone()))
            .collect()
    }

    /// `terraform.tfvars.<env>.example`, evaluated (examples hold literals only).
    pub fn example(&self, env: &str) -> Map<String, Value> {
        self.tfvars(&format!("terraform.tfvars.{env}.example"))
    }

    /// The stage's `terraform.tfvars.*` files: the examples and any committed environment.
    pub fn tfvars_files(&self) -> Vec<String> {
        let dir = terraform_root().join(self.name);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("terraform.tfvars."))
            .collect();
        files.sort();
        files
    }

    /// One tfvars file of the stage, evaluated (they hold literals only).
    pub fn tfvars(&self, file: &str) -> Map<String, Value> {
        let path = terraform_root().join(self.name).join(file);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ctx = Context::new();
        body.attributes()
            .map(|a| {
                let value = a
                    .expr
                    .evaluate(&ctx)
                    .unwrap_or_else(|e| panic!("{}: {}: {e}", path.display(), a.key));
                (a.key.to_string(), value)
            })
            .collect()
    }

    /// Values of `var.*` (defaults, overridden by `inputs`) and of every `local` that can be
    /// computed from them. Locals that read resources or data sources stay unknown, as in a plan.
    pub fn evaluate(&self, inputs: &Map<String, Value>) -> Eval {
        let mut vars = Map::new();
        for (name, block) in self.variables() {
            if let Some(value) = inputs.get(name) {
                vars.insert(name.to_owned(), value.clone());
            } else if let Some(default) = attr(block.body(), "default") {
                let value = default
                    .evaluate(&Context::new())
                    .unwrap_or_else(|e| panic!("{}: default of {name}: {e}", self.name));
                vars.insert(name.to_owned(), value);
            }
        }
        let mut eval = Eval {
            vars,
            locals: Map::new(),
            unknown: BTreeMap::new(),
        };
        let mut pending = self.locals();
        loop {
            let before = pending.len();
            let mut still = Vec::new();
            for (name, expr) in pending {
                match eval.eval(&expr) {
                    Ok(value) => {
                        eval.unknown.remove(&name);
                        eval.locals.insert(name, value);
                    }
                    Err(error) => {
                        eval.unknown.insert(name.clone(), error);
                        still.push((name, expr));
                    }
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                return eval;
            }
        }
    }
}

/// `var` and `local` for one set of inputs.
pub struct Eval {
    pub vars: Map<String, Value>,
    pub locals: Map<String, Value>,
    /// Locals that could not be computed, with the reason.
    pub unknown: BTreeMap<String, String>,
}

impl Eval {
    pub fn context(&self) -> Context<'static> {
        let mut ctx = Context::new();
        ctx.declare_var("var", Value::Object(self.vars.clone()));
        ctx.declare_var("local", Value::Object(self.locals.clone()));
        funcs::declare(&mut ctx);
        ctx
    }

    pub fn eval(&self, expr: &Expression) -> Result<Value, String> {
        expr.evaluate(&self.context()).map_err(|e| e.to_string())
    }

    /// A local that must be computable from the variables alone.
    pub fn local(&self, name: &str) -> &Value {
        self.locals.get(name).unwrap_or_else(|| {
            panic!(
                "local.{name} could not be evaluated: {}",
                self.unknown
                    .get(name)
                    .map_or("no such local", String::as_str)
            )
        })
    }

    /// A local that must be a list of strings.
    pub fn strings(&self, name: &str) -> Vec<String> {
        strings(self.local(name)).unwrap_or_else(|| panic!("local.{name} is not a list of strings"))
    }

    /// The error messages of the validations of `var.<name>` that refuse `value`. A condition
    /// that cannot be evaluated is a test failure, not a refusal.
    pub fn refusals(&self, stage: &Stage, name: &str, value: Value) -> Vec<String> {
        let block = stage.variables()[name];
        let mut with = Eval {
            vars: self.vars.clone(),
            locals: self.locals.clone(),
            unknown: BTreeMap::new(),
        };
        with.vars.insert(name.to_owned(), value);
        let mut refusals = Vec::new();
        for validation in blocks(block.body(), "validation") {
            let condition = attr(validation.body(), "condition").unwrap();
            match with.eval(condition) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => refusals.push(
                    attr(validation.body(), "error_message")
                        .map_or_else(String::new, |m| m.to_string()),
                ),
                Ok(other) => panic!("{}: a validation of {name} gave {other}", stage.name),
                Err(e) => panic!(
                    "{}: a validation of {name} could not be evaluated: {e}\n  condition: {condition}",
                    stage.name
                ),
            }
        }
        refusals
    }
}

pub fn label(block: &Block, index: usize) -> &str {
    block.labels().get(index).map_or_else(
        || panic!("{} block without label {index}", block.identifier()),
        |l| l.as_str(),
    )
}

pub fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

pub fn blocks<'a>(body: &'a Body, kind: &str) -> impl Iterator<Item = &'a Block> + use<'a> {
    let kind = kind.to_owned();
    body.blocks().filter(move |b| b.identifier() == kind)
}

/// A literal string attribute, as Terraform would read it.
pub fn text(body: &Body, key: &str) -> Option<String> {
    attr(body, key)
        .and_then(|e| e.evaluate(&Context::new()).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
}

pub fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// An object of strings, from pairs.
pub fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    Value::from_iter(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v))),
    )
}

/// An expression as text without blanks, for comparing references.
pub fn src(expr: Option<&Expression>) -> String {
    expr.map_or_else(String::new, |e| e.to_string())
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}
