//! The Terraform functions that the workload stage's locals and variable validations call, with
//! Terraform's semantics for the values they get there. A function not declared here makes the
//! evaluation fail, so an expression that starts using one fails the test until it is added.
//! (`can` and `try` cannot be written this way, arguments being evaluated before the call: the
//! evaluated expressions avoid them, and the tests say so when they meet one.)

use std::cell::RefCell;
use std::collections::HashMap;

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Value};
use regex::Regex;

thread_local! {
    /// Compiled patterns: the validations try a few patterns on every name of the table.
    static PATTERNS: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

fn pattern(source: &str) -> Result<Regex, String> {
    PATTERNS.with(|cache| {
        if let Some(re) = cache.borrow().get(source) {
            return Ok(re.clone());
        }
        let re = Regex::new(source).map_err(|e| format!("regex {source:?}: {e}"))?;
        cache.borrow_mut().insert(source.to_owned(), re.clone());
        Ok(re)
    })
}

pub fn declare(ctx: &mut Context) {
    let object = || ParamType::object_of(ParamType::Any);
    let array = || ParamType::array_of(ParamType::Any);
    let one = |p: ParamType| vec![p];
    let defs: Vec<(&str, FuncDef)> = vec![
        ("keys", FuncDef::new(keys, one(object()))),
        ("values", FuncDef::new(values, one(object()))),
        (
            "lookup",
            FuncDef::new(lookup, [object(), ParamType::String, ParamType::Any]),
        ),
        (
            "contains",
            FuncDef::new(contains, [array(), ParamType::Any]),
        ),
        ("alltrue", FuncDef::new(alltrue, one(array()))),
        ("anytrue", FuncDef::new(anytrue, one(array()))),
        ("length", FuncDef::new(length, one(ParamType::Any))),
        (
            "regexall",
            FuncDef::new(regexall, [ParamType::String, ParamType::String]),
        ),
        ("lower", FuncDef::new(lower, one(ParamType::String))),
        ("trimspace", FuncDef::new(trimspace, one(ParamType::String))),
        ("upper", FuncDef::new(upper, one(ParamType::String))),
        (
            "replace",
            FuncDef::new(
                replace,
                [ParamType::String, ParamType::String, ParamType::String],
            ),
        ),
        (
            "startswith",
            FuncDef::new(startswith, [ParamType::String, ParamType::String]),
        ),
        (
            "endswith",
            FuncDef::new(endswith, [ParamType::String, ParamType::String]),
        ),
        (
            "split",
            FuncDef::new(split, [ParamType::String, ParamType::String]),
        ),
        ("join", FuncDef::new(join, [ParamType::String, array()])),
        ("reverse", FuncDef::new(reverse, one(array()))),
        ("sort", FuncDef::new(sort, one(array()))),
        ("distinct", FuncDef::new(distinct, one(array()))),
        ("toset", FuncDef::new(toset, one(array()))),
        ("tonumber", FuncDef::new(tonumber, one(ParamType::Any))),
        ("tostring", FuncDef::new(tostring, one(ParamType::Any))),
        ("nonsensitive", FuncDef::new(identity, one(ParamType::Any))),
        ("sensitive", FuncDef::new(identity, one(ParamType::Any))),
        (
            "merge",
            FuncDef::builder()
                .variadic_param(ParamType::nullable(object()))
                .build(merge),
        ),
        (
            "concat",
            FuncDef::builder().variadic_param(array()).build(concat),
        ),
        (
            "coalesce",
            FuncDef::builder()
                .variadic_param(ParamType::Any)
                .build(coalesce),
        ),
    ];
    for (name, def) in defs {
        ctx.declare_func(name, def);
    }
}

fn object(v: &Value) -> &Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("checked by the param type: {v}"))
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("checked by the param type: {v}"))
}

fn string(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("checked by the param type: {v}"))
}

fn strings(v: &Value) -> Result<Vec<&str>, String> {
    array(v)
        .iter()
        .map(|e| e.as_str().ok_or_else(|| format!("not a string: {e}")))
        .collect()
}

fn bools(v: &Value) -> Result<Vec<bool>, String> {
    array(v)
        .iter()
        .map(|e| e.as_bool().ok_or_else(|| format!("not a bool: {e}")))
        .collect()
}

/// Terraform returns map keys in lexical order.
fn keys(args: FuncArgs) -> Result<Value, String> {
    let mut keys: Vec<&String> = object(&args[0]).keys().collect();
    keys.sort();
    Ok(Value::from_iter(keys.into_iter().cloned()))
}

fn values(args: FuncArgs) -> Result<Value, String> {
    let map = object(&args[0]);
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    Ok(Value::Array(
        keys.into_iter().map(|k| map[k].clone()).collect(),
    ))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    Ok(object(&args[0])
        .get(string(&args[1]))
        .cloned()
        .unwrap_or_else(|| args[2].clone()))
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(array(&args[0]).contains(&args[1])))
}

fn alltrue(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(bools(&args[0])?.into_iter().all(|b| b)))
}

fn anytrue(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(bools(&args[0])?.into_iter().any(|b| b)))
}

/// Characters of a string, elements of a list, attributes of an object.
fn length(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::String(s) => Ok(Value::from(s.chars().count())),
        Value::Array(a) => Ok(Value::from(a.len())),
        Value::Object(o) => Ok(Value::from(o.len())),
        other => Err(format!("length of {other}")),
    }
}

/// Every match; whole matches when the pattern has no capture group, else the groups' lists.
fn regexall(args: FuncArgs) -> Result<Value, String> {
    let re = pattern(string(&args[0]))?;
    let text = string(&args[1]);
    if re.captures_len() == 1 {
        return Ok(Value::from_iter(
            re.find_iter(text).map(|m| m.as_str().to_owned()),
        ));
    }
    let groups = re.captures_iter(text).map(|c| {
        Value::from_iter(
            c.iter()
                .skip(1)
                .map(|g| g.map_or(Value::Null, |m| Value::from(m.as_str()))),
        )
    });
    Ok(Value::from_iter(groups))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(string(&args[0]).to_lowercase()))
}

fn trimspace(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(string(&args[0]).trim()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(string(&args[0]).to_uppercase()))
}

/// A substring, or a regular expression when written between slashes (`/.../`).
fn replace(args: FuncArgs) -> Result<Value, String> {
    let (text, search, with) = (string(&args[0]), string(&args[1]), string(&args[2]));
    match search.strip_prefix('/').and_then(|s| s.strip_suffix('/')) {
        Some(source) if search.len() > 1 => Ok(Value::from(
            pattern(source)?.replace_all(text, with).into_owned(),
        )),
        _ => Ok(Value::from(text.replace(search, with))),
    }
}

fn startswith(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(string(&args[0]).starts_with(string(&args[1]))))
}

fn endswith(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(string(&args[0]).ends_with(string(&args[1]))))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let (separator, text) = (string(&args[0]), string(&args[1]));
    Ok(Value::from_iter(text.split(separator).map(str::to_owned)))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(strings(&args[1])?.join(string(&args[0]))))
}

fn reverse(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        array(&args[0]).iter().rev().cloned().collect(),
    ))
}

fn sort(args: FuncArgs) -> Result<Value, String> {
    let mut items = strings(&args[0])?;
    items.sort_unstable();
    Ok(Value::from_iter(items.into_iter().map(str::to_owned)))
}

/// First occurrence of each element, in order.
fn distinct(args: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for item in array(&args[0]) {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    Ok(Value::Array(out))
}

/// A set of strings iterates in lexical order.
fn toset(args: FuncArgs) -> Result<Value, String> {
    let mut items = strings(&args[0])?;
    items.sort_unstable();
    items.dedup();
    Ok(Value::from_iter(items.into_iter().map(str::to_owned)))
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Number(_) => Ok(args[0].clone()),
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.parse::<f64>().map(Value::from))
            .map_err(|_| format!("cannot convert {s:?} to a number")),
        other => Err(format!("cannot convert {other} to a number")),
    }
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::String(_) => Ok(args[0].clone()),
        Value::Number(n) => Ok(Value::from(n.to_string())),
        Value::Bool(b) => Ok(Value::from(b.to_string())),
        other => Err(format!("cannot convert {other} to a string")),
    }
}

fn identity(args: FuncArgs) -> Result<Value, String> {
    Ok(args[0].clone())
}

/// Later objects win; null arguments are skipped.
fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for arg in args.iter().filter(|a| !a.is_null()) {
        for (k, v) in object(arg) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        args.iter().flat_map(|a| array(a).iter().cloned()).collect(),
    ))
}

/// The first argument that is neither null nor an empty string.
fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|a| !a.is_null() && a.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "coalesce: no non-null, non-empty argument".to_owned())
}
