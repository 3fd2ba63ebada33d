//! Checks a rendered OpenTelemetry Collector config the way `otelcol` would reject it: YAML,
//! the top-level sections, and pipelines that only name defined components, each with at least
//! one receiver and one exporter.

use serde_json::Value;

pub fn validate(text: &str) -> Result<(), String> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| {
        format!(
            "not valid YAML: {}",
            e.to_string().lines().next().unwrap_or("")
        )
    })?;
    for section in ["receivers", "processors", "exporters", "service"] {
        if !doc.get(section).is_some_and(Value::is_object) {
            return Err(format!("{section}: missing or not a map"));
        }
    }
    let pipelines = doc
        .pointer("/service/pipelines")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or("service.pipelines: at least one pipeline is required")?;
    for (name, pipeline) in pipelines {
        for (kind, required) in [
            ("receivers", true),
            ("processors", false),
            ("exporters", true),
        ] {
            let list = pipeline
                .get(kind)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if required && list.is_empty() {
                return Err(format!(
                    "service.pipelines.{name}.{kind}: empty (a pipeline needs at least one)"
                ));
            }
            for component in list {
                let component = component.as_str().unwrap_or_default();
                if doc.get(kind).and_then(|s| s.get(component)).is_none() {
                    return Err(format!(
                        "service.pipelines.{name}.{kind}: `{component}` is not defined under {kind}"
                    ));
                }
            }
        }
    }
    if let Some(extensions) = doc.pointer("/service/extensions").and_then(Value::as_array) {
        for ext in extensions {
            let ext = ext.as_str().unwrap_or_default();
            if doc.get("extensions").and_then(|s| s.get(ext)).is_none() {
                return Err(format!(
                    "service.extensions: `{ext}` is not defined under extensions"
                ));
            }
        }
    }
    Ok(())
}
